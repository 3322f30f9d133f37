import ArgumentParser

@main
struct Earshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "earshot",
        abstract: "Pretrain, adapt and run audio encoders on the CPU.",
        subcommands: [Demo.self, Features.self, DatasetCommand.self, Bench.self])
}
