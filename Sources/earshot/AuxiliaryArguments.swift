import ArgumentParser
import Foundation
import Training

extension PartnerSampling: ExpressibleByArgument {}

/// `finetune`'s auxiliary-learning options: P2C preference pairs and auxiliary heads.
struct AuxiliaryArguments: ParsableArguments {
    @Option(help: "A pairs file (clip_a,clip_b,class,preference with a|b|tie; earshot pairs make writes them): train P2C preference heads beside the classifier.")
    var pairs: String?
    @Option(help: "With --pairs: per-clip vote fractions (clip,<class>,...); consistency then asks the probability gap to reach the vote gap per class.")
    var votes: String?
    @Option(name: .customLong("pref-heads"), help: "Preference heads (P2C's ensemble).") var prefHeads = 3
    @Option(help: "How each clip's partner is drawn every epoch: random, disagreement (of the heads) or inconsistency (with the classifier).")
    var sampling: PartnerSampling = .random
    @Option(name: .customLong("lambda-pref"), help: "Weight of the Bradley-Terry preference loss.") var lambdaPref: Float = 1
    @Option(name: .customLong("lambda-cons"), help: "Weight of the classifier-preference consistency loss.") var lambdaCons: Float = 1
    @Option(name: .customLong("lambda-div"), help: "Weight of the head-diversity term (subtracted).") var lambdaDiv: Float = 0.1
    @Option(name: .customLong("aux-head"), help: "An auxiliary head: a metadata field (speaker, or a column of the data's CSV manifest) and its loss weight, e.g. speaker:0.3 (repeatable).")
    var auxHeads: [String] = []

    /// The settings, nil when none is asked for; `data` is the --data path (its CSV manifest names the fields).
    func config(data: String) throws -> AuxiliaryConfig? {
        var c = AuxiliaryConfig()
        if let pairs {
            var p = PreferenceConfig(pairs: pairs)
            (p.votes, p.heads, p.sampling, p.lambdaPreference, p.lambdaConsistency, p.lambdaDiversity) =
                (votes, prefHeads, sampling, lambdaPref, lambdaCons, lambdaDiv)
            c.preference = p
        } else if votes != nil {
            throw ValidationError("--votes needs --pairs (the votes inform the pairs' consistency term)")
        }
        c.heads = try auxHeads.map { try AuxiliaryHeadConfig(parsing: $0) }
        c.metadata = MetadataColumn.manifest(of: URL(fileURLWithPath: data))?.path
        return c.isEmpty ? nil : c
    }
}
