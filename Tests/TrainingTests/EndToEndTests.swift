import Foundation
import XCTest
import Audio
import Engine
@testable import Models
import NN
@testable import Training
@testable import Inference

/// Pretrain a small SSAST on generated audio, resume it, fine-tune from it, reload and evaluate.
final class EndToEndTests: XCTestCase {
    func makeData() throws -> (URL, Dataset) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        var g = RandomGenerator(seed: 3)
        var lines: [String] = []
        for i in 0..<24 {
            let high = i % 2 == 0
            let f = (high ? 2500.0 : 250.0) * (1 + 0.1 * Double(g.nextUniform()))
            let wave = (0..<11_000).map { n in Float(0.3 * sin(2 * Double.pi * f * Double(n) / 16000)) + 0.01 * g.nextNormal() }
            let name = "clip\(i).wav"
            try AudioFile.writeWAV(wave, sampleRate: 16000, to: dir.appendingPathComponent(name))
            lines.append("{\"path\": \"\(name)\", \"label\": \"\(high ? "high" : "low")\", \"split\": \"\(i < 18 ? "train" : "test")\", \"fold\": \(i % 3 + 1)}")
        }
        let manifest = dir.appendingPathComponent("data.jsonl")
        try lines.joined(separator: "\n").write(to: manifest, atomically: true, encoding: .utf8)
        return (dir, try Dataset.load(manifest))
    }

    func testPretrainResumeFineTuneEvaluate() throws {
        let (dir, data) = try makeData()
        var pre = PretrainConfig()
        (pre.depth, pre.inputTdim, pre.maskCount, pre.epochs, pre.batchSize, pre.lr, pre.warmupSteps) = (1, 64, 8, 2, 6, 5e-4, 2)
        let preRun = try RunDirectory(dir.appendingPathComponent("runs/pre"))
        var lines: [String] = []
        let r1 = try pretrain(pre, data: data, run: preRun) { lines.append($0) }
        XCTAssertEqual(r1.epochs, 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: preRun.best.path))
        pre.epochs = 3
        let r2 = try pretrain(pre, data: data, run: preRun, resume: true) { lines.append($0) }
        XCTAssertEqual(r2.epochs, 3)
        XCTAssertTrue(lines.contains { $0.contains("resuming after epoch 2") })
        let history = try String(contentsOf: preRun.metricsURL, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(history.count, 3, "two epochs, then one more after resuming")
        // The report describes the epoch best.safetensors holds (the checkpoint the run stands for), not the last.
        let lines3 = preRun.metricsHistory(throughEpoch: 3)
        let bestLine = try XCTUnwrap(lines3.max { ($0["validation_pretext_accuracy"] as? Double ?? -1) < ($1["validation_pretext_accuracy"] as? Double ?? -1) })
        XCTAssertEqual(r2.bestEpoch, bestLine["epoch"] as? Int)
        XCTAssertEqual(r2.heldOutAccuracy, Float(bestLine["validation_pretext_accuracy"] as? Double ?? .nan))
        XCTAssertEqual(try SafeTensors.read(preRun.best).metadata["epoch"], String(r2.bestEpoch - 1), "best.safetensors is that epoch (0-based)")
        // The pretrained encoder embeds clips by itself, on the features it was trained on.
        let encoderOnly = try Classifier.loadEmbedder(preRun.url, released: .init())
        XCTAssertEqual(encoderOnly.pipeline, FeaturePipeline(kind: .kaldiFbank(.ast), targetFrames: 64, mean: pre.mean, std: pre.std))
        let clip = try encoderOnly.pipeline.features(of: URL(fileURLWithPath: data.records[0].path)).unsqueeze(0)
        let vector = try encoderOnly.embedding(clip)
        XCTAssertEqual(vector.shape, [1, 192])
        XCTAssertTrue(vector.toArray().allSatisfy(\.isFinite))
        // Files in batches (what `earshot embed` runs): the same vectors as each whole clip alone, a bad file skipped.
        let broken = dir.appendingPathComponent("broken.wav")
        try Data("not audio".utf8).write(to: broken)
        let paths = data.records.prefix(5).map(\.path) + [broken.path]
        let (batched, report) = try encoderOnly.embeddings(of: paths, batchSize: 2)
        XCTAssertEqual(Set(batched.keys), Set(paths.dropLast()))
        XCTAssertEqual(report.skipped.map(\.path), [broken.path])
        for path in paths.dropLast() {
            let whole = try WindowedPass.clipFeatures(URL(fileURLWithPath: path), pipeline: encoderOnly.pipeline, window: 64).0
            XCTAssertGreaterThan(whole.shape[0], 64, "the clips are longer than the model's input")
            let single = try encoderOnly.embedding(whole.unsqueeze(0))
            let diff = zip(try XCTUnwrap(batched[path]).toArray(), single.toArray()).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(diff, 1e-5, path)
        }

        // Paths that hold no classifier are refused with what they are, whichever reader meets them.
        XCTAssertThrowsError(try Classifier.load(preRun.url, released: .init())) {
            XCTAssertTrue("\($0)".contains("pretraining checkpoint (ssast) has no classifier head"), "\($0)")
        }
        let emptyFolder = dir.appendingPathComponent("nothing-here")
        try FileManager.default.createDirectory(at: emptyFolder, withIntermediateDirectories: true)
        let damaged = dir.appendingPathComponent("damaged.pth")
        try Data(repeating: 7, count: 4096).write(to: damaged)
        for (path, expected) in [(emptyFolder, "not a model folder"), (damaged, "must be a zip archive")] {
            XCTAssertThrowsError(try Classifier.load(path, released: .init())) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
            XCTAssertThrowsError(try PretrainedEncoder.read(path)) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }

        var ft = FineTuneConfig()
        (ft.initFrom, ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr, ft.freqm, ft.timem) = (preRun.url.path, 1, 64, 4, 6, 3e-4, 8, 8)
        ft.noise = true
        let ftRun = try RunDirectory(dir.appendingPathComponent("runs/ft"))
        let result = try fineTune(ft, data: data, run: ftRun) { lines.append($0) }
        XCTAssertTrue(try ftRun.readConfig(FineTuneConfig.self).noise)
        XCTAssertTrue(lines.contains { $0.contains("initialised the encoder") })
        XCTAssertGreaterThanOrEqual(result.test.accuracy, 0.8, "\(lines.suffix(4))")

        let clf = try Classifier.load(ftRun.url)
        XCTAssertEqual(clf.classes, ["high", "low"])
        // Files in batches (what `earshot classify` runs): in order, each as its whole clip scored alone.
        let files = data.records.suffix(3).map(\.path)
        var seen: [String] = []
        let classified = try clf.classify(files, batchSize: 2) { file, scores in
            seen.append(file)
            let p = scores.scores
            XCTAssertEqual(scores.ranked.map(\.label).sorted(), ["high", "low"])
            XCTAssertGreaterThanOrEqual(scores.ranked[0].score, scores.ranked[1].score)
            let whole = try WindowedPass.clipFeatures(URL(fileURLWithPath: file), pipeline: clf.pipeline, window: clf.window).0
            let alone = try clf.probabilities(whole.unsqueeze(0)).toArray()
            XCTAssertEqual(p.count, 2)
            for (a, b) in zip(p, alone) { XCTAssertEqual(a, b, accuracy: 1e-5, file) }
        }
        XCTAssertEqual(seen, files)
        XCTAssertTrue(classified.skipped.isEmpty)
        let (eval, _) = try evaluate(clf, on: data.split("test"))
        XCTAssertEqual(eval.clips, 6)
        XCTAssertGreaterThanOrEqual(eval.accuracy, 0.8)
        XCTAssertEqual(eval.confusion.flatMap { $0 }.reduce(0, +), 6)
    }

    /// Pretraining on random windows: the encoder is built for the window, the run records it, held-out
    /// scores repeat exactly, and a window longer than the clip input is refused.
    func testPretrainOnRandomCrops() throws {
        let (dir, data) = try makeData()
        var pre = PretrainConfig()
        (pre.depth, pre.inputTdim, pre.cropFrames, pre.maskCount, pre.epochs, pre.batchSize, pre.lr, pre.warmupSteps) =
            (1, 64, 32, 4, 1, 6, 5e-4, 2)
        let run = try RunDirectory(dir.appendingPathComponent("runs/crop"))
        let report = try pretrain(pre, data: data, run: run) { _ in }
        XCTAssertEqual(report.epochs, 1)
        XCTAssertEqual(try ASTConfig.decode(try XCTUnwrap(ModelRegistry.architecture(try SafeTensors.read(run.best).metadata)).config, "").inputTdim, 32)
        let again = try pretrain(pre, data: data, run: try RunDirectory(dir.appendingPathComponent("runs/crop2"))) { _ in }
        XCTAssertEqual(again.heldOutLoss, report.heldOutLoss, "same seed, same crops and masks")
        XCTAssertEqual(try run.readConfig(PretrainConfig.self).cropFrames, 32)
        pre.cropFrames = 65
        XCTAssertThrowsError(try pretrain(pre, data: data, run: try RunDirectory(dir.appendingPathComponent("runs/bad"))) { _ in }) {
            XCTAssertTrue("\($0)".contains("crop of 65 frames"), "\($0)")
        }
        (pre.cropFrames, pre.epochs) = (nil, 0)
        XCTAssertThrowsError(try pretrain(pre, data: data, run: try RunDirectory(dir.appendingPathComponent("runs/bad"))) { _ in }) {
            XCTAssertTrue("\($0)".contains("epochs 0 must be at least 1"), "\($0)")
        }
        (pre.epochs, pre.inputTdim) = (1, 10)
        XCTAssertThrowsError(try pretrain(pre, data: data, run: try RunDirectory(dir.appendingPathComponent("runs/bad"))) { _ in }) {
            XCTAssertTrue("\($0)".contains("clips of 10 frames are shorter than the patch width 16"), "\($0)")
        }
    }

    /// Pretraining with the clip-level term (`clipContrastWeight`): the run records its clip accuracy,
    /// keeps the projection head in its checkpoints, resumes with it, repeats exactly with the same seed,
    /// and its encoder embeds clips and starts a fine-tuning run like any pretraining run's.
    func testPretrainWithClipContrastResumesAndLoads() throws {
        let (dir, data) = try makeData()
        var pre = PretrainConfig()
        (pre.depth, pre.inputTdim, pre.cropFrames, pre.maskCount, pre.epochs, pre.batchSize, pre.lr, pre.warmupSteps) =
            (1, 64, 32, 4, 1, 6, 5e-4, 2)
        pre.clipContrastWeight = 1
        let run = try RunDirectory(dir.appendingPathComponent("runs/clip"))
        let first = try pretrain(pre, data: data, run: run) { _ in }
        let again = try pretrain(pre, data: data, run: try RunDirectory(dir.appendingPathComponent("runs/clip2"))) { _ in }
        XCTAssertEqual(again.heldOutLoss, first.heldOutLoss, "same seed, same views and masks")
        let epoch1 = try XCTUnwrap(run.metricsHistory(throughEpoch: 1).last)
        let clipAccuracy = try XCTUnwrap(epoch1["validation_clip_accuracy"] as? Double)
        XCTAssertTrue((0...1).contains(clipAccuracy))
        XCTAssertNotNil(epoch1["train_clip_accuracy"])
        XCTAssertNotNil(try SafeTensors.read(run.best).tensors["clip_projection.2.weight"])
        pre.epochs = 2
        XCTAssertEqual(try pretrain(pre, data: data, run: run, resume: true) { _ in }.epochs, 2)
        XCTAssertEqual(try run.readConfig(PretrainConfig.self).clipContrastWeight, 1)
        let embedder = try Classifier.loadEmbedder(run.url, released: .init())
        let clip = try embedder.pipeline.features(of: URL(fileURLWithPath: data.records[0].path)).unsqueeze(0)
        XCTAssertTrue(try embedder.embedding(clip).toArray().allSatisfy(\.isFinite))
        var ft = FineTuneConfig()
        (ft.initFrom, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr) = (run.url.path, 64, 1, 8, 3e-4)
        XCTAssertEqual(try fineTune(ft, data: data, run: try RunDirectory(dir.appendingPathComponent("runs/ft")), log: { _ in }).bestEpoch, 1)
        pre.viewMixRatio = 1
        XCTAssertThrowsError(try pretrain(pre, data: data, run: try RunDirectory(dir.appendingPathComponent("runs/bad"))) { _ in }) {
            XCTAssertTrue("\($0)".contains("view mix ratio 1.0"), "\($0)")
        }
    }

    func testCrossValidationRunsEveryFold() throws {
        let (dir, data) = try makeData()
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr) = (1, 64, 2, 8, 3e-4)
        let cv = try crossValidate(ft, data: data, root: dir.appendingPathComponent("cv"), log: { _ in })
        XCTAssertEqual(cv.folds.keys.sorted(), [1, 2, 3])
        XCTAssertEqual(cv.folds.values.map(\.test.clips).reduce(0, +), 24, "every clip is tested exactly once")
        XCTAssertEqual(cv.mean, cv.folds.values.map(\.test.accuracy).reduce(0, +) / 3, accuracy: 1e-12)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("cv/fold-2/best.safetensors").path))
        // kfold.json: each fold's test score on the epoch its validation split chose (the best
        // validation epoch of its metrics log), and the mean.
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("cv/kfold.json")))
                                    as? [String: Any])
        let folds = try XCTUnwrap(summary["folds"] as? [[String: Any]])
        for fold in folds {
            let k = try XCTUnwrap(fold["fold"] as? Int)
            let run = try RunDirectory(dir.appendingPathComponent("cv/fold-\(k)"))
            let history = run.metricsHistory(throughEpoch: 2)
            XCTAssertEqual(history.count, 2)
            let validation = history.map { $0["validation_accuracy"] as? Double ?? -1 }
            let chosen = try XCTUnwrap(fold["best_epoch"] as? Int)
            XCTAssertEqual(validation[chosen - 1], validation.max(), "fold \(k): the best validation epoch")
            XCTAssertEqual(fold["validation_accuracy"] as? Double, validation.max())
            // The test fold is scored once, after training, and logged as such.
            let lines = try String(contentsOf: run.metricsURL, encoding: .utf8).split(separator: "\n")
            let testLines = lines.filter { $0.contains("\"split\":\"test\"") }
            XCTAssertEqual(testLines.count, 1, "fold \(k)")
            XCTAssertFalse(history.contains { $0.keys.contains { $0.hasPrefix("test_") } }, "no epoch line carries a test number")
        }
        XCTAssertEqual(try XCTUnwrap(summary["mean_test_accuracy"] as? Double), cv.mean, accuracy: 1e-12)
        XCTAssertEqual(summary["selected_on"] as? String, "validation")
    }

    func testRandomCropTrainingAndWindowedEvaluation() throws {
        XCTAssertEqual(Classifier.windowStarts(frames: 512, window: 256), [0, 128, 256])
        XCTAssertEqual(Classifier.windowStarts(frames: 300, window: 256), [0, 44])
        XCTAssertEqual(Classifier.windowStarts(frames: 100, window: 256), [0])
        let (dir, data) = try makeData()
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.cropFrames, ft.epochs, ft.batchSize, ft.lr, ft.freqm, ft.timem) = (1, 96, 48, 4, 6, 3e-4, 8, 8)
        let run = try RunDirectory(dir.appendingPathComponent("runs/crop"))
        let result = try fineTune(ft, data: data, run: run, log: { _ in })
        XCTAssertGreaterThanOrEqual(result.test.accuracy, 0.8)
        let clf = try Classifier.load(run.url)
        XCTAssertEqual(clf.model.inputFrames, 48, "the model sees the crop")
        XCTAssertEqual(clf.pipeline.targetFrames, 96, "the features keep the whole clip")
        // A whole clip scores as the mean of its windows' probabilities (starts 0, 24, 48).
        let x = try clf.pipeline.features(of: dir.appendingPathComponent("clip0.wav")).unsqueeze(0)
        let p = try clf.probabilities(x)
        var mean = Tensor.zeros(p.shape)
        for start in [0, 24, 48] {
            mean = try mean + clf.probabilities(x.slice(axis: 1, start: start, end: start + 48)) * (1 / Float(3))
        }
        for (a, b) in zip(p.toArray(), mean.toArray()) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        let e = try clf.embedding(x)
        var meanEmbedding = Tensor.zeros(e.shape)
        for start in [0, 24, 48] {
            meanEmbedding = try meanEmbedding + GradMode.noGrad { try clf.model.embedding(x.slice(axis: 1, start: start, end: start + 48)) } * (1 / Float(3))
        }
        for (a, b) in zip(e.toArray(), meanEmbedding.toArray()) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        ft.cropFrames = 200
        XCTAssertThrowsError(try fineTune(ft, data: data, run: try RunDirectory(dir.appendingPathComponent("runs/bad")), log: { _ in })) {
            XCTAssertTrue("\($0)".contains("crop-frames 200"), "\($0)")
        }
    }

    func testStochasticDepthAndWeightDecayReachTheModel() throws {
        let (dir, data) = try makeData()
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr, ft.dropPath, ft.weightDecay) = (2, 64, 4, 6, 3e-4, 0.4, 0.01)
        let run = try RunDirectory(dir.appendingPathComponent("runs/droppath"))
        let result = try fineTune(ft, data: data, run: run, log: { _ in })
        XCTAssertGreaterThanOrEqual(result.test.accuracy, 0.8, "still learns the two tones with blocks dropped")
        let clf = try Classifier.load(run.url)
        // timm's schedule: 0 for the first block, rising linearly to the rate at the last.
        XCTAssertEqual(try XCTUnwrap(clf.model as? AST).v.blocks.map(\.dropPath.p), [0, 0.4])
        // At evaluation no block is dropped: the same clip scores the same twice.
        let x = try clf.pipeline.features(of: dir.appendingPathComponent("clip0.wav")).unsqueeze(0)
        XCTAssertEqual(try clf.probabilities(x).toArray(), try clf.probabilities(x).toArray())
        for (field, bad) in [("drop-path 1.0", { (c: inout FineTuneConfig) in c.dropPath = 1 }),
                             ("weight-decay -0.1", { (c: inout FineTuneConfig) in c.weightDecay = -0.1 })] {
            var c = ft
            bad(&c)
            XCTAssertThrowsError(try fineTune(c, data: data, run: try RunDirectory(dir.appendingPathComponent("runs/bad")), log: { _ in })) {
                XCTAssertTrue("\($0)".contains(field), "\($0)")
            }
        }
    }

    /// A run killed and resumed writes the same history as one that never stopped: the plateau
    /// schedule's state and the best score carry over (a learning rate too small to move the held-out
    /// score makes the plateau schedule halve it after the third flat epoch).
    func testResumedPretrainingRepeatsTheUninterruptedRun() throws {
        let (dir, data) = try makeData()
        var pre = PretrainConfig()
        (pre.depth, pre.inputTdim, pre.maskCount, pre.epochs, pre.batchSize, pre.lr, pre.warmupSteps) = (1, 64, 8, 5, 6, 1e-9, 1)
        let straight = try RunDirectory(dir.appendingPathComponent("straight"))
        let full = try pretrain(pre, data: data, run: straight, log: { _ in })
        pre.epochs = 2
        let split = try RunDirectory(dir.appendingPathComponent("split"))
        _ = try pretrain(pre, data: data, run: split, log: { _ in })
        pre.epochs = 5
        // Settings given to a resumed run other than its epochs are the run's own (config.json), not the caller's.
        var changed = pre
        (changed.inputTdim, changed.maskCount, changed.lr) = (128, 50, 1e-3)
        let resumed = try pretrain(changed, data: data, run: split, resume: true, log: { _ in })
        XCTAssertEqual(try split.readConfig(PretrainConfig.self).inputTdim, 64)
        let a = straight.metricsHistory(throughEpoch: 5), b = split.metricsHistory(throughEpoch: 5)
        XCTAssertEqual(a.count, 5)
        XCTAssertEqual(a.map { $0["lr"] as? Double }, b.map { $0["lr"] as? Double })
        XCTAssertLessThan(a.last!["lr"] as! Double, 1e-9, "the plateau schedule acted, so the test can tell")
        XCTAssertEqual(a.map { $0["validation_pretext_accuracy"] as? Double }, b.map { $0["validation_pretext_accuracy"] as? Double })
        XCTAssertEqual(full.heldOutAccuracy, resumed.heldOutAccuracy)
        // Resumed after its last epoch, a run reports where it stands instead of an empty report.
        let again = try pretrain(pre, data: data, run: split, resume: true, log: { _ in })
        XCTAssertEqual(again.epochs, 5)
        XCTAssertEqual(again.heldOutAccuracy, full.heldOutAccuracy)
        // A fresh run in a folder that holds one is refused, and its files are left as they were;
        // with overwrite the folder holds the new run alone.
        let before = try Data(contentsOf: split.last)
        XCTAssertThrowsError(try pretrain(pre, data: data, run: split, log: { _ in })) {
            XCTAssertTrue("\($0)".contains("already holds a run (5 epochs done)"), "\($0)")
        }
        XCTAssertEqual(try Data(contentsOf: split.last), before)
        XCTAssertEqual(split.metricsHistory(throughEpoch: 99).count, 5)
        pre.epochs = 1
        _ = try pretrain(pre, data: data, run: split, overwrite: true, log: { _ in })
        XCTAssertEqual(try String(contentsOf: split.metricsURL, encoding: .utf8).split(separator: "\n").count, 1)
    }

    /// A time budget ends the run inside the epoch where it is spent (that partial epoch validated and
    /// kept, the next not started); a resumed run counts the time already spent and may get a new budget.
    func testPretrainingStopsWhenItsTimeBudgetIsSpent() throws {
        let (dir, data) = try makeData()
        var pre = PretrainConfig()
        (pre.depth, pre.inputTdim, pre.maskCount, pre.epochs, pre.batchSize, pre.lr, pre.warmupSteps) = (1, 64, 8, 4, 6, 5e-4, 1)
        pre.timeBudgetMinutes = 1e-9   // spent by the first step
        let run = try RunDirectory(dir.appendingPathComponent("budget"))
        var lines: [String] = []
        let first = try pretrain(pre, data: data, run: run) { lines.append($0) }
        XCTAssertEqual(first.epochs, 1)
        let history = run.metricsHistory(throughEpoch: 99)
        XCTAssertEqual(history.count, 1)
        XCTAssertEqual(history[0]["time_budget_spent"] as? Bool, true)
        XCTAssertEqual(history[0]["train_epoch_fraction"] as! Double, 1.0 / 3, accuracy: 1e-9, "one of the 18 training clips' 3 batches")
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.best.path))
        XCTAssertTrue(lines.contains { $0.contains("time budget") && $0.contains("after 1 of 3 steps") }, "\(lines)")
        // Resumed with the budget already spent: nothing more is trained.
        lines = []
        let again = try pretrain(pre, data: data, run: run, resume: true) { lines.append($0) }
        XCTAssertEqual(again.epochs, 1)
        XCTAssertEqual(run.metricsHistory(throughEpoch: 99).count, 1)
        XCTAssertTrue(lines.contains { $0.contains("is spent") }, "\(lines)")
        // A new, larger budget on resume: the remaining epochs run whole.
        pre.timeBudgetMinutes = 60
        pre.epochs = 3
        let more = try pretrain(pre, data: data, run: run, resume: true, log: { _ in })
        XCTAssertEqual(more.epochs, 3)
        let after = run.metricsHistory(throughEpoch: 99)
        XCTAssertEqual(after.count, 3)
        XCTAssertNil(after[2]["time_budget_spent"])
        pre.timeBudgetMinutes = -1
        XCTAssertThrowsError(try pretrain(pre, data: data, run: try RunDirectory(dir.appendingPathComponent("bad")), log: { _ in })) {
            XCTAssertTrue("\($0)".contains("--time-budget"), "\($0)")
        }
    }

    /// A class that only the test split has ("aaa", sorting first) must not shift the training labels'
    /// ids; and `shotsPerClass` trains on that many clips per class (recorded in the metrics log).
    func testClassesMissingFromTrainingAndFewShot() throws {
        let (dir, data) = try makeData()
        var records = data.records
        records.append(ClipRecord(path: records[0].path, labels: ["aaa"], split: "test"))
        let withRare = Dataset(records: records, layout: data.layout)
        XCTAssertEqual(withRare.classes, ["aaa", "high", "low"])
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr, ft.testSplit) = (1, 64, 4, 6, 3e-4, "test")
        let run = try RunDirectory(dir.appendingPathComponent("rare"))
        _ = try fineTune(ft, data: withRare, run: run, log: { _ in })
        let clf = try Classifier.load(run.url)
        XCTAssertEqual(clf.classes, ["aaa", "high", "low"])
        let (eval, _) = try evaluate(clf, on: data.split("test"))
        XCTAssertGreaterThanOrEqual(eval.accuracy, 0.8, "high and low keep their own ids in training")
        // Clips the model has no class for are left out; when none is left, evaluation refuses.
        let foreign = Dataset(records: data.records.map { ClipRecord(path: $0.path, labels: ["other"]) }, layout: "relabelled")
        XCTAssertThrowsError(try evaluate(clf, on: foreign)) { error in
            XCTAssertTrue("\(error)".contains("none of the 24 clips has a label among the model's 3 classes"), "\(error)")
        }
        // Settings no run can use stop it before it starts, named.
        for (change, fragment) in [({ (c: inout FineTuneConfig) in c.epochs = 0 }, "epochs 0 must be at least 1"),
                                   ({ $0.inputTdim = 8 }, "clips of 8 frames are shorter than the patch width 16"),
                                   ({ $0.depth = 0 }, "depth 0 must be at least 1"),
                                   ({ $0.lr = .nan }, "learning rate nan must be positive")] as [((inout FineTuneConfig) -> Void, String)] {
            var bad = ft
            bad.shotsPerClass = nil
            change(&bad)
            XCTAssertThrowsError(try fineTune(bad, data: data, run: try RunDirectory(dir.appendingPathComponent("bad")), log: { _ in })) {
                XCTAssertTrue("\($0)".contains(fragment), "\($0)")
            }
        }
        // An unlabelled clip (a plain folder of clips mixed in) stops fine-tuning before it starts, named.
        var unlabelled = data.records
        unlabelled[5].labels = []
        XCTAssertThrowsError(try fineTune(ft, data: Dataset(records: unlabelled, layout: data.layout),
                                             run: try RunDirectory(dir.appendingPathComponent("unlabelled")), log: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("1 of 24 clips have no label (first: \(unlabelled[5].path))"), "\(error)")
        }
        // Data of one class would train a softmax that is always right: refused, naming the class.
        var oneClass = data.records
        for i in oneClass.indices { oneClass[i].labels = [oneClass[0].labels[0]] }
        var single = ft
        single.shotsPerClass = nil
        XCTAssertThrowsError(try fineTune(single, data: Dataset(records: oneClass, layout: data.layout),
                                             run: try RunDirectory(dir.appendingPathComponent("one-class")), log: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("the labels name only one class (\(oneClass[0].labels[0])); a classifier needs at least two"), "\(error)")
        }

        ft.shotsPerClass = 2
        var lines: [String] = []
        let fewRun = try RunDirectory(dir.appendingPathComponent("few"))
        _ = try fineTune(ft, data: data, run: fewRun, log: { lines.append($0) })
        XCTAssertEqual(fewRun.metricsHistory(throughEpoch: 4).compactMap { $0["train_clips"] as? Int }, [4, 4, 4, 4])
        XCTAssertTrue(lines.contains { $0.contains("training on 4 clips") }, "\(lines.prefix(3))")
        XCTAssertEqual(try fewRun.readConfig(FineTuneConfig.self).shotsPerClass, 2)
        ft.shotsPerClass = 0
        XCTAssertThrowsError(try fineTune(ft, data: data, run: try RunDirectory(dir.appendingPathComponent("none")), log: { _ in }))
    }

    /// Fine-tuning from released checkpoints (tools/make_ast_fixtures.py) runs and says where it started.
    func testFineTuneFromReleases() throws {
        let (dir, data) = try makeData()
        let release = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ModelsTests/Fixtures/ssast_release_tiny.pth")
        var ft = FineTuneConfig()
        (ft.initFrom, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr) = (release.path, 64, 1, 6, 3e-4)
        ft.model = "ssast-base-frame"   // the start's shape wins, and the run's config says so
        var lines: [String] = []
        let releaseRun = try RunDirectory(dir.appendingPathComponent("from-release"))
        let result = try fineTune(ft, data: data, run: releaseRun) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.contains("initialised the encoder from \(release.path) (SSAST)") }, "\(lines.prefix(3))")
        XCTAssertEqual(result.test.clips, 6)
        let recorded = try releaseRun.readConfig(FineTuneConfig.self)
        XCTAssertEqual([recorded.model, "\(recorded.depth ?? 0)"], ["ssast-tiny-patch", "1"])

        // An AST release keeps its architecture (strides 12, 40 mel bins, cls-pair pooling), and the
        // classifier it becomes is a start again, for new labels.
        var ast = FineTuneConfig()
        (ast.initFrom, ast.inputTdim, ast.epochs, ast.batchSize, ast.lr) = (release.deletingLastPathComponent().appendingPathComponent("tiny_12_12_0.5000.pth").path, 64, 2, 6, 1e-3)
        ast.releaseShape = ReleaseShape(heads: 4, melBins: 40)
        let astRun = try RunDirectory(dir.appendingPathComponent("from-ast"))
        lines = []
        _ = try fineTune(ast, data: data, run: astRun) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.contains("tiny_12_12_0.5000.pth (AST)") }, "\(lines.prefix(3))")
        let clf = try Classifier.load(astRun.url)
        let config = try XCTUnwrap(clf.model as? AST).config
        XCTAssertEqual([config.fstride, config.dim, config.labelDim], [12, 32, 2])
        XCTAssertEqual(clf.pipeline.bins, 40)
        var again = FineTuneConfig()
        (again.initFrom, again.inputTdim, again.epochs, again.batchSize) = (astRun.url.path, 64, 1, 6)
        lines = []
        _ = try fineTune(again, data: data, run: try RunDirectory(dir.appendingPathComponent("again"))) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.contains("from-ast/best.safetensors (AST)") }, "\(lines.prefix(3))")
        // A resumed run rebuilds its model from its own checkpoint: the start may be gone by then.
        let copy = dir.appendingPathComponent("audioset_12_12_copy.pth")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: try XCTUnwrap(ast.initFrom)), to: copy)
        var moved = ast
        (moved.initFrom, moved.epochs) = (copy.path, 1)
        let movedRun = try RunDirectory(dir.appendingPathComponent("moved"))
        _ = try fineTune(moved, data: data, run: movedRun, log: { _ in })
        try FileManager.default.removeItem(at: copy)
        moved.epochs = 2
        lines = []
        _ = try fineTune(moved, data: data, run: movedRun, resume: true) { lines.append($0) }
        XCTAssertTrue(lines.contains("resuming after epoch 1"), "\(lines.prefix(3))")
        XCTAssertEqual(movedRun.metricsHistory(throughEpoch: 2).count, 2)
        ast.depth = 3
        XCTAssertThrowsError(try fineTune(ast, data: data, run: try RunDirectory(dir.appendingPathComponent("bad")), log: { _ in })) {
            XCTAssertTrue("\($0)".contains("depth 3 differs from the 2 blocks"), "\($0)")
        }
    }

    /// A fine-tuning run resumed (here after its last epoch) keeps and reports its best epoch.
    func testResumedFineTuningKeepsItsBest() throws {
        let (dir, data) = try makeData()
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr) = (1, 64, 3, 6, 3e-4)
        let run = try RunDirectory(dir.appendingPathComponent("ft"))
        let first = try fineTune(ft, data: data, run: run, log: { _ in })
        let bestBytes = try Data(contentsOf: run.best)
        // The run's own settings win on resume: a different clip length (the model is 64 frames) is
        // ignored instead of feeding the model features it cannot take.
        var changed = ft
        (changed.inputTdim, changed.lr) = (128, 1e-2)
        let again = try fineTune(changed, data: data, run: run, resume: true, log: { _ in })
        XCTAssertEqual(try run.readConfig(FineTuneConfig.self).inputTdim, 64)
        XCTAssertEqual(again.test.accuracy, first.test.accuracy)
        XCTAssertEqual(again.test.confusion, first.test.confusion)
        XCTAssertEqual(again.bestEpoch, first.bestEpoch)
        XCTAssertEqual(try Data(contentsOf: run.best), bestBytes, "best.safetensors is left alone")
        let testLines = try String(contentsOf: run.metricsURL, encoding: .utf8).split(separator: "\n").filter { $0.contains("\"split\":\"test\"") }
        XCTAssertEqual(testLines.count, 1, "a resume that trains nothing does not record a second test scoring")
        // What `earshot finetune --resume` without --epochs continues to: the run's own epochs.
        XCTAssertEqual(RunDirectory.recordedEpochs(run.url), 3)
        XCTAssertEqual(RunDirectory.recordedEpochs(dir), 3, "a subfolder's (folds, few-shot draws)")
        XCTAssertNil(RunDirectory.recordedEpochs(try temporaryFolder("no-run")))
        // A damaged config.json does not block a resume: the caller's settings stand in, and it says so.
        try Data("{".utf8).write(to: run.configURL)
        var lines: [String] = []
        let fallback = try fineTune(ft, data: data, run: run, resume: true) { lines.append($0) }
        XCTAssertEqual(fallback.test.accuracy, first.test.accuracy)
        XCTAssertTrue(lines.contains { $0.contains("cannot read run config") && $0.contains("this command's settings") }, "\(lines.prefix(3))")
    }
}
