import Audio
import CLAP
import Engine
import Foundation
import Inference
import Models
import NN

/// Knowledge distillation (`earshot finetune --teacher`): a teacher's scores on every training clip,
/// computed once before training, join the labels as soft targets,
///
///     L = (1 − α) · L_labels + α · T² · KL(teacher_T ‖ student_T)        (`Losses.distillation`)
///
/// so a small or fast student learns what a large model knows about each clip (how much a "3" sounds like
/// an "8"), not only its label. The teacher is any classifier Earshot loads (a run, a Hugging Face folder,
/// an original `.pth`, PANNs), scored as `classify` scores a clip (its own features and windows), whose
/// classes include the run's by name; or a CLAP scored zero-shot on the run's class names (`clap`), which
/// needs no training on these classes at all. Validation and the checkpoint are the student's alone.
public struct DistillationConfig: Codable, Sendable, Equatable {
    public var teacher: String
    /// α: the weight of the distillation term; 1 − α weighs the labels' loss.
    public var weight: Float = 0.5
    /// T: both sides' logits are divided by it (Hinton's softening; 1 compares the scores as they are).
    public var temperature: Float = 2
    /// The teacher is a CLAP, scored zero-shot on the class names with `templates` (LAION's when empty).
    public var clap = false
    public var templates: [String] = []
    public var tokenizer: String?

    public init(teacher: String) { self.teacher = teacher }

    public func validate() throws {
        guard weight > 0 && weight <= 1 else { throw NNError("--kd-weight \(weight) must be in (0, 1]") }
        guard temperature > 0 && temperature.isFinite else { throw NNError("--kd-temperature \(temperature) must be positive") }
    }
}

/// A teacher's logits over the run's classes for each clip of a training set (by record index).
public struct TeacherTargets: Sendable {
    public let config: DistillationConfig
    public let multiLabel: Bool
    public let classes: Int
    /// Per training record: the teacher's logits over the run's classes; nil where the teacher could not
    /// read the clip (nor then can the loader: such a clip is skipped in training too).
    let logits: [[Float]?]

    /// The clips the teacher scored.
    public var scored: Int { logits.count(where: { $0 != nil }) }

    /// Teacher logits [B, C] for a batch's record indices; a clip without a score gets its labels, as
    /// logits of ±log(10⁶) (the teacher then agrees with the labels).
    func batch(_ indices: [Int], labels: [[Int]]) throws -> Tensor {
        let out = Tensor.zeros([indices.count, classes])
        let sure = Float(Foundation.log(1e6))
        for (row, i) in indices.enumerated() {
            let d = out.data + row * classes
            if let l = logits[i] {
                for c in 0..<classes { d[c] = l[c] }
            } else {
                for c in 0..<classes { d[c] = -sure }
                for c in labels[row] where c < classes { d[c] = sure }
            }
        }
        return out
    }

    /// A name as the two sides may spell it: case, underscores and hyphens aside ("Dog" = "dog",
    /// "crying_baby" = "Crying baby").
    static func normalised(_ name: String) -> String {
        name.lowercased().replacingOccurrences(of: "_", with: " ").replacingOccurrences(of: "-", with: " ")
            .split(separator: " ").joined(separator: " ")
    }

    /// Where each of `classes` is among the teacher's, or an error naming those it lacks.
    static func match(_ classes: [String], in teacher: [String], teacherName: String) throws -> [Int] {
        let index = Dictionary(teacher.enumerated().map { (normalised($1), $0) }, uniquingKeysWith: { a, _ in a })
        let missing = classes.filter { index[normalised($0)] == nil }
        guard missing.isEmpty else {
            let shown = missing.prefix(5).map { "'\($0)'" }.joined(separator: ", ") + (missing.count > 5 ? " and \(missing.count - 5) more" : "")
            throw NNError("--teacher \(teacherName): its \(teacher.count) classes lack the run's \(shown) (matched by name, case, _ and - aside); "
                          + "use a teacher trained on these classes, or a CLAP with --teacher-clap (zero-shot on any names)")
        }
        return classes.map { index[normalised($0)]! }
    }

    /// Scores the training records with the teacher. Single-label students take the teacher's log-probabilities of
    /// their classes (a softmax over them renormalises a larger teacher's, or a multi-label teacher's sigmoids, to
    /// these classes); multi-label students take a multi-label teacher's per-class logits.
    public static func make(_ config: DistillationConfig, classes: [String], multiLabel: Bool, records: [ClipRecord],
                            batchSize: Int, report: SkipReport, log: @escaping (String) -> Void) throws -> TeacherTargets {
        try config.validate()
        let paths = Array(Set(records.map(\.path))).sorted()
        var byPath: [String: [Float]] = [:]
        let floor: Float = 1e-7
        if config.clap {
            guard !multiLabel else { throw NNError("--teacher-clap: a zero-shot CLAP teaches single-label runs (its scores are a softmax over the class names)") }
            let clap = try CLAP.load(model: URL(fileURLWithPath: config.teacher), tokenizer: config.tokenizer.map { URL(fileURLWithPath: $0) })
            let zeroShot = try ZeroShotClassifier(clap: clap, labels: classes,
                                                  templates: config.templates.isEmpty ? [ZeroShotClassifier.defaultTemplate] : config.templates)
            let embedded = try CLAPFileEmbedder(clap: clap).embed(files: paths, progress: { done, total in
                if done == total || done % 500 == 0 { log("teacher: \(done)/\(total) clips") }
            })
            for (path, reason) in embedded.skipped { report.recordSkip(path, reason) }
            if !embedded.paths.isEmpty {
                let audio = try Tensor(embedded.embeddings, shape: [embedded.paths.count, clap.model.projectionDim])
                let z = try GradMode.noGrad { try zeroShot.logits(audioEmbeddings: audio) }.toArray()
                for (row, path) in embedded.paths.enumerated() { byPath[path] = Array(z[(row * classes.count)..<((row + 1) * classes.count)]) }
            }
        } else {
            let teacher = try Classifier.load(ShippedModels.resolve(config.teacher))
            guard multiLabel == false || teacher.multiLabel else {
                throw NNError("--teacher \(config.teacher): a single-label teacher (softmax scores) cannot teach a multi-label run")
            }
            let columns = try match(classes, in: teacher.classes, teacherName: config.teacher)
            var done = 0
            let skipped = try teacher.classify(paths, batchSize: batchSize) { path, scores in
                byPath[path] = columns.map { c in
                    let p = min(max(scores.scores[c], floor), 1 - floor)
                    return multiLabel ? Foundation.log(p) - Foundation.log(1 - p) : Foundation.log(p)
                }
                done += 1
                if done % 500 == 0 { log("teacher: \(done)/\(paths.count) clips") }
            }
            for (path, reason) in skipped.skipped { report.recordSkip(path, reason) }
        }
        let targets = TeacherTargets(config: config, multiLabel: multiLabel, classes: classes.count, logits: records.map { byPath[$0.path] })
        guard targets.scored > 0 else { throw NNError("--teacher \(config.teacher): it could read none of the \(paths.count) training clips") }
        log(String(format: "teacher %@%@ scored %d of %d training clips; distillation weight %g, temperature %g",
                   config.teacher, config.clap ? " (CLAP, zero-shot on the class names)" : "", byPath.count, paths.count,
                   config.weight, config.temperature))
        return targets
    }
}
