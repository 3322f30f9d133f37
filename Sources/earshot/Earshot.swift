import ArgumentParser

@main
struct Earshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "earshot",
        abstract: "Pretrain, adapt and run audio encoders on the CPU.",
        subcommands: [Demo.self, Keywords.self, ModelsCommand.self, Pretrain.self, Finetune.self, Evaluate.self, Classify.self, Tag.self, Embed.self,
                      Features.self, DatasetCommand.self, Bench.self, ProbeCommand.self, ZeroShot.self, IndexCommand.self, Search.self])
}
