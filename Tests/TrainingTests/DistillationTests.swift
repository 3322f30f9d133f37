import Foundation
import XCTest
import Audio
import Engine
import Inference
import NN
import CLAP
@testable import Training

/// `finetune --teacher`: the teacher's scores on each training clip are its classifier's, mapped onto the run's
/// classes by name; a student trained on them alone (α = 1, no label in its loss) learns what the teacher
/// knows; settings and class sets that cannot work stop the run before training.
final class DistillationTests: XCTestCase {
    func teacherRun(_ dir: URL, _ data: Dataset) throws -> URL {
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr, ft.lrDecayStart) = (1, 64, 15, 2, 1e-3, 100)
        let url = dir.appendingPathComponent("teacher")
        let result = try fineTune(ft, data: data, run: RunDirectory(url)) { _ in }
        XCTAssertGreaterThanOrEqual(result.test.accuracy, 0.75, "the teacher learnt the tones")
        return url
    }

    func testTeacherScoresAreItsClassifiersAndAStudentLearnsFromThemAlone() throws {
        let dir = try temporaryFolder("kd")
        let data = try toneDataset(in: dir)
        let teacher = try teacherRun(dir, data)
        let train = data.filter { $0.split == "train" }

        // The targets: log-probabilities of the teacher's classify scores, in the run's class order.
        var kd = DistillationConfig(teacher: teacher.path)
        let targets = try TeacherTargets.make(kd, classes: ["low", "high"], multiLabel: false, records: train.records, batchSize: 4,
                                              report: SkipReport(), log: { _ in })
        XCTAssertEqual(targets.scored, train.records.count)
        let classifier = try Classifier.load(teacher)
        var expected: [String: [Float]] = [:]
        _ = try classifier.classify(train.records.map(\.path)) { path, s in expected[path] = [log(s.scores[1]), log(s.scores[0])] }
        let batch = targets.batch([0, 3], labels: [[0], [0]])
        for (row, i) in [0, 3].enumerated() {
            let e = try XCTUnwrap(expected[train.records[i].path])
            XCTAssertEqual(batch.data[row * 2], e[0], accuracy: 1e-5)
            XCTAssertEqual(batch.data[row * 2 + 1], e[1], accuracy: 1e-5)
        }

        // Pure distillation: the labels weigh nothing in the loss, yet the student learns the tones from the teacher.
        (kd.weight, kd.temperature) = (1, 1)
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr, ft.lrDecayStart, ft.seed) = (1, 64, 15, 2, 1e-3, 100, 7)
        ft.distillation = kd
        var lines: [String] = []
        let run = try RunDirectory(dir.appendingPathComponent("student"))
        let result = try fineTune(ft, data: data, run: run) { lines.append($0) }
        XCTAssertGreaterThanOrEqual(result.test.accuracy, 0.75, "\(lines.suffix(6))")
        XCTAssertTrue(lines.contains { $0.contains("teacher \(teacher.path) scored 8 of 8 training clips") }, "\(lines.prefix(8))")
        let metrics = try String(contentsOf: run.metricsURL, encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"train_kd\""), metrics)
        XCTAssertTrue(try String(contentsOf: run.configURL, encoding: .utf8).contains("\"temperature\""), "the run records its teacher")
        // The student is an ordinary classifier.
        XCTAssertEqual(try Classifier.load(run.best).classes, ["high", "low"])
        // Resumed, it trains on the scores it began with, kept in the run folder: the teacher itself is not needed.
        let kept = try SafeTensors.read(run.url.appendingPathComponent(TeacherTargets.fileName)).tensors["logits"]!
        XCTAssertEqual(kept.shape, [8, 2])
        try FileManager.default.removeItem(at: teacher)
        ft.epochs = 16
        lines = []
        _ = try fineTune(ft, data: data, run: run, resume: true) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.contains("teacher scores read from") && $0.contains("(8 clips)") }, "\(lines.prefix(8))")
        // Other clips are not what the kept scores were made for: the teacher is asked again (and, gone, is named).
        let fewer = Dataset(records: data.records.filter { $0.path != train.records[0].path }, layout: data.layout)
        ft.epochs = 17
        XCTAssertThrowsError(try fineTune(ft, data: fewer, run: run, resume: true) { _ in }) {
            XCTAssertTrue("\($0)".contains(teacher.path), "\($0)")
        }
    }

    func testClassSetsAndSettingsThatCannotWorkAreRefused() throws {
        let dir = try temporaryFolder("kd-bad")
        let data = try toneDataset(in: dir)
        let teacher = try teacherRun(dir, data)
        let records = data.records.filter { $0.split == "train" }
        func refused(_ classes: [String], multiLabel: Bool = false, config: DistillationConfig? = nil, _ message: String) {
            XCTAssertThrowsError(try TeacherTargets.make(config ?? DistillationConfig(teacher: teacher.path), classes: classes, multiLabel: multiLabel,
                                                         records: records, batchSize: 4, report: SkipReport(), log: { _ in })) {
                XCTAssertTrue("\($0)".contains(message), "\($0)")
            }
        }
        // Names match with case, _ and - aside; a class the teacher lacks is named.
        XCTAssertNoThrow(try TeacherTargets.make(DistillationConfig(teacher: teacher.path), classes: ["HIGH", "Low"], multiLabel: false,
                                                 records: records, batchSize: 4, report: SkipReport(), log: { _ in }))
        refused(["high", "medium"], "lack the run's 'medium'")
        // --teacher-classes names the teacher's classes for the run's: one each, or several summed (a softmax teacher).
        let mapFile = dir.appendingPathComponent("map.csv")
        try "class,teacher_class\ntreble,high\nany,high;low\n".write(to: mapFile, atomically: true, encoding: .utf8)
        var mapped = DistillationConfig(teacher: teacher.path)
        mapped.classMap = try DistillationConfig.classMap(csv: mapFile)
        let plain = try TeacherTargets.make(DistillationConfig(teacher: teacher.path), classes: ["high", "low"], multiLabel: false,
                                            records: records, batchSize: 4, report: SkipReport(), log: { _ in }).batch([0, 1], labels: [[0], [1]]).toArray()
        let viaMap = try TeacherTargets.make(mapped, classes: ["treble", "any"], multiLabel: false, records: records, batchSize: 4,
                                             report: SkipReport(), log: { _ in }).batch([0, 1], labels: [[0], [1]]).toArray()
        for row in 0..<2 {
            XCTAssertEqual(viaMap[row * 2], plain[row * 2], accuracy: 1e-6, "treble is the teacher's high")
            XCTAssertEqual(viaMap[row * 2 + 1], log(exp(plain[row * 2]) + exp(plain[row * 2 + 1])), accuracy: 1e-5, "any sums high and low")
        }
        var unknownClass = mapped
        unknownClass.classMap = ["treble": ["soprano"]]
        refused(["treble", "low"], config: unknownClass, "lack the run's 'treble' (mapped to 'soprano')")
        unknownClass.classMap = ["alto": ["high"]]
        refused(["high", "low"], config: unknownClass, "--teacher-classes maps 'alto', not among the run's classes")
        try "class,teacher\nx,y\n".write(to: mapFile, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DistillationConfig.classMap(csv: mapFile)) { XCTAssertTrue("\($0)".contains("expected the columns class and teacher_class"), "\($0)") }
        refused(["high", "low"], multiLabel: true, "single-label teacher (softmax scores) cannot teach a multi-label run")
        var bad = DistillationConfig(teacher: teacher.path)
        bad.weight = 0
        refused(["high", "low"], config: bad, "--kd-weight 0.0 must be in (0, 1]")
        bad = DistillationConfig(teacher: teacher.path)
        bad.temperature = -1
        refused(["high", "low"], config: bad, "--kd-temperature -1.0 must be positive")
        refused(["high", "low"], config: DistillationConfig(teacher: dir.appendingPathComponent("nowhere").path), "nowhere")
        // Not with the other auxiliary signals in one run: stopped before anything is written.
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs) = (1, 64, 1)
        ft.distillation = DistillationConfig(teacher: teacher.path)
        var aux = AuxiliaryConfig()
        aux.heads = [AuxiliaryHeadConfig(field: "speaker", weight: 1)]
        ft.auxiliary = aux
        let run = try RunDirectory(dir.appendingPathComponent("both"))
        XCTAssertThrowsError(try fineTune(ft, data: data, run: run) { _ in }) { XCTAssertTrue("\($0)".contains("does not combine"), "\($0)") }
        XCTAssertFalse(run.holdsRun)
    }

    /// A CLAP teaches zero-shot: each clip's logits are its zero-shot classifier's over the run's class names.
    func testCLAPTeacherScoresZeroShot() throws {
        let clapFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("CLAPTests/Fixtures/clap_tiny")
        let dir = try temporaryFolder("kd-clap")
        let records = try toneDataset(in: dir).records.filter { $0.split == "train" }
        var kd = DistillationConfig(teacher: clapFolder.path)
        (kd.clap, kd.templates) = (true, ["the sound of a {} tone"])
        let classes = ["high", "low"]
        let targets = try TeacherTargets.make(kd, classes: classes, multiLabel: false, records: records, batchSize: 4, report: SkipReport(), log: { _ in })
        XCTAssertEqual(targets.scored, records.count)
        let clap = try CLAP.load(model: clapFolder)
        let zeroShot = try ZeroShotClassifier(clap: clap, labels: classes, templates: kd.templates)
        let embedded = try CLAPFileEmbedder(clap: clap).embed(files: [records[2].path])
        let expected = try GradMode.noGrad {
            try zeroShot.logits(audioEmbeddings: Tensor(embedded.embeddings, shape: [1, clap.model.projectionDim]))
        }.toArray()
        let batch = targets.batch([2], labels: [[0]]).toArray()
        XCTAssertEqual(batch[0], expected[0], accuracy: 1e-5)
        XCTAssertEqual(batch[1], expected[1], accuracy: 1e-5)
        XCTAssertThrowsError(try TeacherTargets.make(kd, classes: classes, multiLabel: true, records: records, batchSize: 4,
                                                     report: SkipReport(), log: { _ in })) {
            XCTAssertTrue("\($0)".contains("a zero-shot CLAP teaches single-label runs"), "\($0)")
        }
    }

    /// Clips without labels train on the teacher's scores alone (semi-supervised distillation); without a teacher,
    /// or with settings that need labels, they stop the run; one in the test split stays out of training.
    func testUnlabelledClipsLearnFromTheTeacherAlone() throws {
        let dir = try temporaryFolder("kd-semi")
        let data = try toneDataset(in: dir)
        let teacher = try teacherRun(dir, data)
        // Two training clips keep their labels (one a class), six lose them, and one more unlabelled clip is a test clip.
        var records = data.records.enumerated().map { i, r -> ClipRecord in
            var r = r
            if r.split == "train" && i >= 2 { r.labels = [] }
            return r
        }
        let extra = dir.appendingPathComponent("extra.wav")
        try writeTone(extra, frequency: 2500, samples: 16000)
        records.append(ClipRecord(path: extra.path, labels: [], split: "test"))
        let semi = Dataset(records: records, layout: "tones, 6 training clips unlabelled")
        var ft = FineTuneConfig()
        (ft.depth, ft.inputTdim, ft.epochs, ft.batchSize, ft.lr, ft.lrDecayStart, ft.seed) = (1, 64, 15, 2, 1e-3, 100, 3)
        XCTAssertThrowsError(try fineTune(ft, data: semi, run: RunDirectory(dir.appendingPathComponent("no-teacher"))) { _ in }) {
            XCTAssertTrue("\($0)".contains("or a --teacher to learn them from"), "\($0)")
        }
        var kd = DistillationConfig(teacher: teacher.path)
        kd.temperature = 1
        ft.distillation = kd
        for (setting, message) in [("mixup", "--mixup does not go with clips without labels"), ("balanced", "--balanced samples per class")] {
            var bad = ft
            if setting == "mixup" { bad.mixup = 0.5 } else { bad.balancedSampling = true }
            let run = try RunDirectory(dir.appendingPathComponent(setting))
            XCTAssertThrowsError(try fineTune(bad, data: semi, run: run) { _ in }) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
            XCTAssertFalse(run.holdsRun)
        }
        var lines: [String] = []
        let result = try fineTune(ft, data: semi, run: RunDirectory(dir.appendingPathComponent("semi"))) { lines.append($0) }
        XCTAssertTrue(lines.contains("6 clips without labels train on the teacher's scores alone (1 in the test or validation split left out)"), "\(lines.prefix(6))")
        XCTAssertTrue(lines.contains { $0.contains("scored 8 of 8 training clips") }, "\(lines.prefix(8))")
        XCTAssertEqual(result.trainClips, 8)
        XCTAssertEqual(result.testClips, 2, "the unlabelled test clip is not scored")
        XCTAssertGreaterThanOrEqual(result.test.accuracy, 0.75, "\(lines.suffix(6))")
    }

    /// The command line: `finetune --teacher` with its options reaches the run (recorded in its config).
    func testTeacherOptionsOnTheCommandLine() throws {
        let dir = try temporaryFolder("kd-cli")
        let (data, manifest) = try toneManifest(in: dir)
        let teacher = try teacherRun(dir, data)
        let out = dir.appendingPathComponent("student").path
        let run = try runEarshot(["finetune", "--data", manifest.path, "--depth", "1", "--target-length", "64", "--epochs", "1", "--batch-size", "4",
                                  "--teacher", teacher.path, "--kd-weight", "0.3", "--kd-temperature", "4", "--out", out])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("distillation weight 0.3, temperature 4"), run.output)
        let config = try String(contentsOf: URL(fileURLWithPath: out + "/config.json"), encoding: .utf8)
        XCTAssertTrue(config.contains("\"temperature\" : 4") || config.contains("\"temperature\":4"), config)
        let bad = try runEarshot(["finetune", "--data", manifest.path, "--teacher-clap", "--out", dir.appendingPathComponent("x").path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("need --teacher"), bad.output)
    }

    /// A released classifier teaches with its own class names: a Hugging Face AST release (Speech, Dog bark, Music,
    /// classical) for a run whose `dog_bark` matches by name and whose `talk` is mapped to Speech; the third class,
    /// the run's to ignore, renormalised away by the softmax.
    func testReleasedTeacherWithMappedClasses() throws {
        let release = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ModelsTests/Fixtures/hf_ast_release")
        let dir = try temporaryFolder("kd-release")
        let records = try toneDataset(in: dir).records.filter { $0.split == "train" }
        var kd = DistillationConfig(teacher: release.path)
        kd.classMap = ["talk": ["Speech"]]
        let targets = try TeacherTargets.make(kd, classes: ["dog_bark", "talk"], multiLabel: false, records: records, batchSize: 4,
                                              report: SkipReport(), log: { _ in })
        let teacher = try Classifier.load(release)
        XCTAssertEqual(teacher.classes, ["Speech", "Dog bark", "Music, classical"])
        var scores: [String: [Float]] = [:]
        _ = try teacher.classify(records.map(\.path)) { path, s in scores[path] = s.scores }
        let batch = targets.batch([1], labels: [[0]]).toArray()
        let p = try XCTUnwrap(scores[records[1].path])
        XCTAssertEqual(batch[0], log(p[1]), accuracy: 1e-5, "dog_bark is the release's Dog bark")
        XCTAssertEqual(batch[1], log(p[0]), accuracy: 1e-5, "talk is its Speech")
        let soft = try Losses.softenedTeacher(Tensor(batch, shape: [1, 2]), temperature: 1, multiLabel: false).toArray()
        XCTAssertEqual(soft[0], p[1] / (p[0] + p[1]), accuracy: 1e-5, "renormalised over the run's two classes")
        XCTAssertThrowsError(try TeacherTargets.make(DistillationConfig(teacher: release.path), classes: ["dog_bark", "talk"], multiLabel: false,
                                                     records: records, batchSize: 4, report: SkipReport(), log: { _ in })) {
            XCTAssertTrue("\($0)".contains("lack the run's 'talk'") && "\($0)".contains("--teacher-classes"), "\($0)")
        }
    }
}
