import ArgumentParser
import Training

extension BanditKind: ExpressibleByArgument {}

/// `--aux-data` and `--bandit`: few-shot learning with auxiliary datasets (FLAD, docs/FLAD.md).
struct FLADArguments: ParsableArguments {
    @Option(name: .customLong("aux-data"),
            help: "An auxiliary dataset (manifest or folder) mixed into the training, one batch a step chosen by --bandit; repeat for more. Append :speaker to label it by speaker (path:speaker).")
    var auxData: [String] = []
    @Option(help: "How the auxiliary dataset of each step is chosen: exp3 or ucb1, paid the cosine of its gradient with the target's.")
    var bandit: BanditKind?

    func config() throws -> FLADConfig? {
        guard !auxData.isEmpty else {
            if bandit != nil { throw ValidationError("--bandit chooses among auxiliary datasets: give them with --aux-data") }
            return nil
        }
        return FLADConfig(auxiliary: auxData.map(FLADConfig.Source.init(parsing:)), bandit: bandit ?? .exp3)
    }
}
