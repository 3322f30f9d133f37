import ArgumentParser
import Audio
import Foundation
import Models
import NN
import Training

/// Epochs for a run: the command's, else on --resume the run's own (a resume without --epochs continues
/// the run as it was set up, not to the command's default), else 10.
func resolvedEpochs(_ given: Int?, resume: Bool, out: String) -> Int {
    given ?? (resume ? RunDirectory.recordedEpochs(URL(fileURLWithPath: out)) : nil) ?? 10
}

struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Self-supervised masked patch pretraining on unlabelled audio, or (--task contrastive) a CLAP on captioned audio.")
    @Option(help: "A model with a pretraining objective (earshot models): ssast-{tiny,small,base}-{patch,frame} or ssamba-{tiny,small,base}-{patch,frame} (default ssast-tiny-patch; with --task contrastive the tower is --audio-model).") var model: String?
    @Option(help: "A manifest or dataset folder; repeat to pretrain on several (labels are never used).") var data: [String]
    @Option(help: "Run folder.") var out: String
    @Option(help: "Epochs (the most, with --time-budget; default 10, or on --resume the run's own).") var epochs: Int?
    @Option(name: .customLong("time-budget"), help: "Stop after this many minutes of training (summed over a resumed run; the epoch it ends in is validated and kept): the same budget for models whose epochs cost different times.")
    var timeBudget: Double?
    @Option(name: .customLong("batch-size")) var batchSize = 8
    @Option var lr: Float = 1e-4
    @Option(name: .customLong("target-length"), help: "Frames per clip (10 ms each).") var targetLength = 1024
    @Option(name: .customLong("crop-frames"), help: "Pretrain on random windows of this many frames of each clip (a new window every epoch).")
    var cropFrames: Int?
    @Option(name: .customLong("mask-patches")) var maskPatches = 400
    @Option(name: .customLong("generative-weight"), help: "Weight w of the generative term, nce + w·mse (default SSAST's 10; 0 skips that pass).")
    var generativeWeight: Float?
    @Option(name: .customLong("nce-temperature"), help: "InfoNCE temperature (default SSAST's 1).") var nceTemperature: Float?
    @Option(name: .customLong("clip-contrast"), help: "Weight of a clip-level contrastive term between two views of each clip (other windows, another clip mixed in); default 0, off.")
    var clipContrast: Float?
    @Option(name: .customLong("clip-temperature"), help: "Temperature of the clip-level term (default 0.1).") var clipTemperature: Float?
    @Option(name: .customLong("view-mix"), help: "Largest share of another clip mixed into each view (default 0.4; 0: windows only).") var viewMix: Float?
    @Option(help: "Encoder depth override (quick runs).") var depth: Int?
    @Option(name: .customLong("init-from"), help: "Masked patch: continue pretraining from a pretraining run, checkpoint or shipped encoder (its model, depth and window; e.g. earshot-ssast-tiny on your own audio). Contrastive: a pretraining run, checkpoint or release the audio tower starts from.")
    var initFrom: String?
    @Option(help: "Feature mean (earshot dataset stats; default -4.2677393, or the --init-from start's own).") var mean: Float?
    @Option(help: "Feature std (default 4.5689974, or the --init-from start's own).") var std: Float?
    @Option var seed: UInt64 = 0
    @Flag(help: "Continue from the run folder's last checkpoint, with the settings the run started with (only --epochs may change).")
    var resume = false
    @Flag(help: "Start again in a run folder that holds a run, removing its checkpoints and metrics.") var overwrite = false
    @OptionGroup(title: "Contrastive (CLAP) pretraining") var contrastive: ContrastiveArguments

    func run() throws {
        let epochs = resolvedEpochs(epochs, resume: resume, out: out)
        if contrastive.isContrastive, let model {
            // It named the masked-patch model and was ignored: the run trained another tower than asked.
            throw ValidationError("--model \(model) is the masked-patch model; a contrastive run's audio tower is --audio-model")
        }
        if contrastive.isContrastive {
            return try contrastive.run(data: data, out: out, initFrom: initFrom, epochs: epochs, batchSize: batchSize, lr: lr, frames: targetLength,
                                       depth: depth, mean: mean ?? PretrainConfig().mean, std: std ?? PretrainConfig().std, seed: seed,
                                       resume: resume, overwrite: overwrite)
        }
        var c = PretrainConfig()
        // A start's own normalisation unless one is given: the encoder was trained on features scaled so.
        // An unreadable start is left to `pretrain`, which names the problem (and ignores the start on --resume).
        let startSettings = mean == nil || std == nil ? (try? initFrom.map(PretrainStart.read))??.settings : nil
        (c.mean, c.std) = (mean ?? startSettings?.mean ?? c.mean, std ?? startSettings?.std ?? c.std)
        (c.model, c.depth, c.inputTdim, c.maskCount, c.epochs, c.batchSize, c.lr, c.seed, c.initFrom) =
            (model ?? "ssast-tiny-patch", depth, targetLength, maskPatches, epochs, batchSize, lr, seed, initFrom)
        (c.cropFrames, c.generativeWeight, c.nceTemperature) = (cropFrames, generativeWeight, nceTemperature)
        (c.clipContrastWeight, c.clipTemperature, c.viewMixRatio) = (clipContrast, clipTemperature, viewMix)
        c.timeBudgetMinutes = timeBudget
        let sets = try data.map { try Dataset.load(URL(fileURLWithPath: $0)) }
        // Clips marked test/validation stay out of training and score the pretext task (see heldOutSplit).
        let all = Dataset(records: sets.flatMap(\.records), layout: sets.map(\.layout).joined(separator: " + "))
        let report = try Training.pretrain(c, data: all, run: RunDirectory(URL(fileURLWithPath: out)), resume: resume, overwrite: overwrite)
        print(String(format: "pretrained %d epochs: held-out pretext accuracy %.3f, loss %.4f at epoch %d, the checkpoint the run stands for (%d clips skipped) -> %@",
                     report.epochs, report.heldOutAccuracy, report.heldOutLoss, report.bestEpoch, report.skipped, out))
    }
}

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a classifier: from a pretraining run or release, a released or Earshot classifier, or from scratch.",
        discussion: """
        The validation split (the data's own, else --val-fraction of the training clips, stratified per class or \
        speaker-disjoint where the data has speakers) chooses the checkpoint; the test split (--test, else \
        --test-fraction of the data) is scored once, on that checkpoint, and reported as the result.
        """)
    @Option(name: [.customLong("init-from"), .customLong("init")],
            help: "Start: a pretraining run, checkpoint or release .pth, or a released classifier (.pth, Hugging Face folder) or Earshot classifier (omit to train from scratch).")
    var initFrom: String?
    @OptionGroup(title: "Original .pth starts") var release: ReleaseShapeArguments
    @Option(help: "Model to train from scratch (earshot models lists them); a start keeps its own architecture.") var model = "ssast-tiny-patch"
    @Option(help: "A manifest or dataset folder.") var data: String
    @Option var out: String
    @Option(help: "Epochs (default 10, or on --resume the run's own).") var epochs: Int?
    @Option(name: .customLong("batch-size")) var batchSize = 8
    @Option var lr: Float = 1e-4
    @Option(name: .customLong("target-length")) var targetLength = 1024
    @Option(name: .customLong("crop-frames"), help: "Train on random windows of this many frames of each clip (evaluation averages windows over the clip).")
    var cropFrames: Int?
    @Option(help: "Test split name or fold number.") var test = "test"
    @Option(name: .customLong("test-fraction"), help: "Fraction held out as the test split when the data has none.") var testFraction = 0.2
    @Option(name: .customLong("val-fraction"), help: "Fraction of the training clips held out for validation when the data has no validation split.")
    var valFraction = 0.1
    @Option(name: .customLong("label-field"), help: "What to classify: label, or speaker (speaker identification).") var labelField = "label"
    @Flag(name: .customLong("cross-validate"), help: "Run every fold as the test fold in turn (fold-based datasets) and report the mean.")
    var crossValidate = false
    @Option(help: "SpecAugment frequency mask width in bins (default: 24 of 128 bins, AST's recipe; 0 for PANNs, which drops stripes itself).") var freqm: Int?
    @Option(help: "SpecAugment time mask width in frames (default: 96 per 1024 frames of the model's input, AST's recipe, scaled: 24 at 256, 9 at 96; 0 for PANNs).")
    var timem: Int?
    @Option(help: "Mixup alpha (0 = off).") var mixup: Float = 0
    @Flag(help: "Class-balanced sampling (PANNs' recipe for AudioSet-style data): each pick takes the next class of a shuffled queue, then its next clip.")
    var balanced = false
    @Flag(help: "AST's noise augmentation: uniform noise up to 0.1 on the normalised features, then a roll of -10..9 frames.")
    var noise = false
    @Option(name: .customLong("lr-decay-start"), help: "Epoch from which the learning rate decays every epoch.") var lrDecayStart = 5
    @Option(name: .customLong("lr-decay"), help: "Per-epoch learning-rate factor from --lr-decay-start.") var lrDecay: Float = 0.85
    @Option(name: .customLong("drop-path"), help: "Stochastic depth rate of the last block (rising linearly from 0; timm's drop_path_rate).")
    var dropPath: Float = 0
    @Option(name: .customLong("weight-decay"), help: "Adam weight decay.") var weightDecay: Float = 5e-7
    @Flag(name: .customLong("freeze-encoder"), help: "Train the head only; the encoder runs in eval mode (its batch-norm statistics kept, no dropout), as --peft linear.")
    var freezeEncoder = false
    @Option var depth: Int?
    @Option(help: "Feature mean (default: the --init-from start's own, none for a released PANNs; else AudioSet's -4.2677393).") var mean: Float?
    @Option(help: "Feature std (default: the --init-from start's own; else AudioSet's 4.5689974).") var std: Float?
    @Option var seed: UInt64 = 0
    @Option(help: "Train on at most this many clips per class, drawn with --seed from the training split (few-shot / label efficiency).")
    var shots: Int?
    @Option(help: "Run this many times with seeds --seed, --seed+1, ... (other few-shot draws with --shots) and report mean and std.")
    var repeats = 1
    @OptionGroup(title: "Parameter-efficient transfer") var peft: PEFTArguments
    @OptionGroup(title: "Auxiliary learning (preferences, auxiliary heads)") var auxiliary: AuxiliaryArguments
    @OptionGroup(title: "Auxiliary datasets (FLAD)") var flad: FLADArguments
    @OptionGroup(title: "Knowledge distillation") var distillation: DistillationArguments
    @Flag(help: "Continue from the run folder's last checkpoint, with the settings the run started with (only --epochs may change).")
    var resume = false
    @Flag(help: "Start again in a run folder that holds a run, removing its checkpoints and metrics.") var overwrite = false

    func run() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats \(repeats) must be at least 1") }
        let epochs = resolvedEpochs(epochs, resume: resume, out: out)
        var c = FineTuneConfig()
        c.peft = try peft.config()
        c.auxiliary = try auxiliary.config(data: data)
        c.flad = try flad.config()
        c.distillation = try distillation.config()
        // With --init-from, the start's architecture wins over --model.
        (c.model, c.depth) = (model, depth)
        if initFrom != nil && release.shape != ReleaseShape() { c.releaseShape = release.shape }
        (c.initFrom, c.inputTdim, c.epochs, c.batchSize, c.lr, c.testSplit, c.mixup, c.freezeEncoder, c.seed) =
            (initFrom, targetLength, epochs, batchSize, lr, test, mixup, freezeEncoder, seed)
        // Unless given, the features are normalised as the start's encoder read them (AudioSet's where it records nothing).
        (c.mean, c.std) = (mean ?? c.mean, std ?? c.std)
        if initFrom != nil && mean == nil && std == nil { c.normalisationFromStart = true }
        c.balancedSampling = balanced
        // Unset widths are the model's (`defaultMasks`): AST's scaled to the window, none for PANNs.
        (c.freqm, c.timem) = (freqm, timem)
        (c.lrDecayStart, c.lrDecay, c.cropFrames, c.dropPath, c.weightDecay, c.shotsPerClass, c.noise) =
            (lrDecayStart, lrDecay, cropFrames, dropPath, weightDecay, shots, noise)
        (c.testFraction, c.valFraction) = (testFraction, valFraction)
        let dataset = try Dataset.load(URL(fileURLWithPath: data)).labelled(by: labelField)
        if crossValidate {
            let cv = try Training.crossValidate(c, data: dataset, root: URL(fileURLWithPath: out), resume: resume, overwrite: overwrite)
            for (k, r) in cv.folds.sorted(by: { $0.key < $1.key }) {
                print(String(format: "fold %d: test accuracy %.3f (epoch %d chosen on validation)", k, r.test.accuracy, r.bestEpoch))
            }
            print(String(format: "%d-fold test accuracy %.3f ± %.3f, checkpoints chosen on validation -> %@/kfold.json", cv.folds.count, cv.mean, cv.std, out))
            return
        }
        if repeats > 1 {
            let rep = try repeatedRuns(c, data: dataset, root: URL(fileURLWithPath: out), repeats: repeats, resume: resume, overwrite: overwrite)
            for (i, r) in rep.runs.enumerated() { print(String(format: "draw %d (seed %d): test accuracy %.3f", i, Int(seed) + i, r.test.accuracy)) }
            print(String(format: "%d draws: test accuracy %.3f ± %.3f, checkpoints chosen on validation -> %@/repeats.json", repeats, rep.mean, rep.std, out))
            return
        }
        let r = try fineTune(c, data: dataset, run: RunDirectory(URL(fileURLWithPath: out)), resume: resume, overwrite: overwrite)
        print(String(format: "test accuracy %.3f, macro F1 %.3f over %d clips (scored once, on epoch %d chosen by validation accuracy %.3f) -> %@",
                     r.test.accuracy, r.test.macroF1, r.test.clips, r.bestEpoch, r.validationAccuracy, out))
    }
}


extension PEFTConfig.AdapterKind: ExpressibleByArgument {}
extension AdapterPlacement: ExpressibleByArgument {}
extension BottleneckAdapter.Initialisation: ExpressibleByArgument {}
extension PEFTConfig.MixtureKind: ExpressibleByArgument {}
extension PEFTConfig.MixtureLocation: ExpressibleByArgument {}

/// `--peft` and its options (PETL_AST's defaults).
struct PEFTArguments: ParsableArguments {
    @Option(help: "full, linear (head only), bitfit (biases), adapter, conformer, moa, lora, prefix or prompt; omit to train every weight.") var peft: PEFTConfig.Method?
    @Option(name: .customLong("reduction-rate"), help: "Adapter bottleneck and LoRA rank: width / this, rounded (default 64; 96 for conformer, PETL_AST's).")
    var reductionRate: Int?
    @Option(help: "pfeiffer (one adapter, at the MLP) or houlsby (at the attention too).") var adapter: PEFTConfig.AdapterKind = .pfeiffer
    @Option(name: .customLong("adapter-placement"), help: "parallel (beside the layer, on its input), sequential (on its output) or before (the layer on the adapter's output, plus it).")
    var adapterPlacement: AdapterPlacement = .parallel
    @Flag(name: .customLong("adapter-residual"), help: "Sequential adapters: add the layer's output back (PETL_AST's apply_residual).")
    var adapterResidual = false
    @Option(name: .customLong("adapter-init"), help: "zeros (PETL_AST: every adapter weight 0, so only the up bias learns) or standard (down random, up 0).")
    var adapterInit: BottleneckAdapter.Initialisation = .zeros
    @Option(name: .customLong("lora-targets"), help: "Projections LoRA adapts, of q,k,v,o,fc1,fc2 (default q,v as PETL_AST).")
    var loraTargets = "q,v"
    @Option(name: .customLong("lora-alpha"), help: "LoRA alpha: scale alpha / reduction rate (PETL_AST), or alpha / rank with --lora-scale-by-rank.")
    var loraAlpha: Float = 8
    @Option(name: .customLong("prefix-tokens"), help: "Prefix tuning: N learned tokens a layer, half keys and half values (default 24).")
    var prefixTokens = 24
    @Option(help: "Prompt tuning: prompts in the distillation token's place (default 25).") var prompts = 25
    @Option(help: "Mixture of adapters: how many (default 7; --reduction-rate defaults to 128 for it).") var experts = 7
    @Option(help: "Mixture of adapters: dense (a router weighs every adapter per token) or soft (each adapter reads learned averages of the tokens).")
    var mixture: PEFTConfig.MixtureKind = .dense
    @Option(help: "Soft mixture: slots (token averages) per adapter (default 1).") var slots = 1
    @Flag(name: .customLong("normalize-slots"), help: "Soft mixture: L2-normalise tokens and slot embeddings, with a learned scale (PETL_AST's --normalize).")
    var normalizeSlots = false
    @Option(name: .customLong("mixture-location"), help: "Pfeiffer mixture: beside the attention (PETL_AST's default) or the mlp.")
    var mixtureLocation: PEFTConfig.MixtureLocation = .attention
    @Flag(name: .customLong("mixture-once"), help: "Add an attention-side mixture's output once (PETL_AST adds it after the attention and again after the MLP).")
    var mixtureOnce = false
    @Flag(inversion: .prefixedNo, help: "Prompt tuning: a set of prompts for every block (deep, the default) or the first only.")
    var deep = true
    @Flag(name: .customLong("lora-scale-by-rank"), help: "Scale LoRA by alpha / rank (the LoRA paper) instead of PETL_AST's alpha / reduction rate.")
    var loraScaleByRank = false

    func config() throws -> PEFTConfig? {
        guard let peft else { return nil }
        var c = PEFTConfig(method: peft)
        (c.reductionRate, c.adapterKind, c.placement, c.adapterResidual, c.adapterInit) =
            (reductionRate ?? [.conformer: 96, .moa: 128][peft] ?? 64, adapter, adapterPlacement, adapterResidual, adapterInit)
        c.loraTargets = loraTargets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        (c.loraAlpha, c.loraScaleByRank, c.prefixTokens, c.promptTokens, c.deepPrompts, c.experts) =
            (loraAlpha, loraScaleByRank, prefixTokens, prompts, deep, experts)
        (c.mixture, c.slots, c.normalizeSlots, c.mixtureLocation, c.mixtureAddsTwice) =
            (mixture, slots, normalizeSlots, mixtureLocation, !mixtureOnce)
        guard c.reductionRate >= 1 else { throw ValidationError("--reduction-rate \(c.reductionRate) must be at least 1") }
        return c
    }
}
