import ArgumentParser
import Audio
import Foundation
import Training

/// `earshot pretrain --task contrastive`: the options of a CLAP run (the data, output, epochs, batch
/// size, learning rate, depth, frames, normalisation and seed are Pretrain's own options).
struct ContrastiveArguments: ParsableArguments {
    @Option(help: "What to pretrain: masked-patch (SSAST/SSAMBA's objective, on unlabelled audio) or contrastive (a CLAP, on captioned audio).")
    var task = "masked-patch"
    @Option(name: .customLong("audio-model"), help: "Contrastive: the audio tower, a registry name (earshot models) or htsat-tiny / htsat-base.")
    var audioModel = "ssast-tiny-frame"
    @Option(name: .customLong("text-model"), help: "Contrastive: the text tower, a BERT/RoBERTa folder (config.json, model.safetensors, tokenizer files), e.g. all-MiniLM-L6-v2.")
    var textModel: String?
    @Flag(name: .customLong("keyword-to-caption"), help: "Contrastive: captions from labels for clips without one (templates; see docs/CLAP.md).")
    var keywordToCaption = false
    @Option(name: .customLong("caption-templates"), help: "Contrastive: a text file of caption templates, one per line, {} where the keywords go.")
    var captionTemplates: String?
    @Option(help: "Contrastive: a CSV label,keyword renaming labels in captions and zero-shot prompts (0 -> zero).")
    var keywords: String?
    @Option(name: .customLong("label-captions"), help: "Contrastive: a CSV label,caption of captions written per label (several rows per label allowed).")
    var labelCaptions: String?
    @Option(name: .customLong("hold-out-classes"), help: "Contrastive: labels kept out of training, comma-separated; their clips are scored zero-shot at the end.")
    var holdOutClasses: String?
    @Option(name: .customLong("projection-dim"), help: "Contrastive: width of the joint space.") var projectionDim = 512
    @Option(name: .customLong("max-text-tokens"), help: "Contrastive: tokens a caption is cut at.") var maxTextTokens = 77
    @Option(name: .customLong("val-fraction"), help: "Contrastive: fraction of the training clips held out for validation when the data has no validation split.")
    var valFraction = 0.1
    @Option(name: .customLong("warmup-steps"), help: "Contrastive: linear warmup steps.") var warmupSteps = 100
    @Flag(name: .customLong("freeze-text-tower"), help: "Contrastive: keep the text tower's weights as loaded (its projection trains).")
    var freezeTextTower = false
    @Flag(name: .customLong("no-feature-cache"), help: "Contrastive: do not cache features under the run folder.") var noFeatureCache = false

    var isContrastive: Bool { task == "contrastive" }

    func validate() throws {
        guard ["masked-patch", "contrastive"].contains(task) else {
            throw ValidationError("--task \(task): one of masked-patch, contrastive")
        }
        if isContrastive && textModel == nil { throw ValidationError("--task contrastive needs --text-model (a BERT/RoBERTa folder)") }
    }

    /// Runs the contrastive task with Pretrain's shared options.
    func run(data: [String], out: String, initFrom: String?, epochs: Int, batchSize: Int, lr: Float, frames: Int, depth: Int?, mean: Float, std: Float,
             seed: UInt64, resume: Bool, overwrite: Bool) throws {
        var c = ContrastiveConfig()
        (c.audioModel, c.initFrom, c.textModel, c.depth, c.inputTdim, c.epochs, c.batchSize, c.lr, c.seed, c.mean, c.std) =
            (audioModel, initFrom, textModel ?? "", depth, frames, epochs, batchSize, lr, seed, mean, std)
        (c.projectionDim, c.maxTextTokens, c.valFraction, c.warmupSteps, c.keywordToCaption, c.cacheFeatures) =
            (projectionDim, maxTextTokens, valFraction, warmupSteps, keywordToCaption, !noFeatureCache)
        c.freezeText = freezeTextTower
        c.holdOutClasses = holdOutClasses.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } } ?? []
        try c.readCaptionFiles(templates: captionTemplates.map { URL(fileURLWithPath: $0) }, keywords: keywords.map { URL(fileURLWithPath: $0) },
                               labelCaptions: labelCaptions.map { URL(fileURLWithPath: $0) })
        let sets = try data.map { try Dataset.load(URL(fileURLWithPath: $0)) }
        let all = Dataset(records: sets.flatMap(\.records), layout: sets.map(\.layout).joined(separator: " + "))
        let result = try trainContrastive(c, data: all, run: RunDirectory(URL(fileURLWithPath: out)), resume: resume, overwrite: overwrite)
        print("contrastive: \(result)")
    }
}
