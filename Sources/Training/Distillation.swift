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
    /// The teacher's classes for each run class whose name it does not share (`--teacher-classes`): AudioSet's
    /// "Baby cry, infant cry" for ESC's `crying_baby`; several summed into one (a softmax teacher's probabilities)
    /// or their maximum taken (a multi-label teacher's).
    public var classMap: [String: [String]]? = nil

    public init(teacher: String) { self.teacher = teacher }

    /// Reads a `class,teacher_class` CSV (several teacher classes separated by `;` or `|`), naming the file and
    /// line of what it cannot use.
    public static func classMap(csv url: URL) throws -> [String: [String]] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch { throw NNError("\(url.path): cannot read (\(error.localizedDescription))") }
        let table: (header: [String], rows: [[String: String]])
        do { table = try CSV.records(text, file: url.path) } catch { throw NNError("\(error)") }
        guard table.header.contains("class"), table.header.contains("teacher_class") else {
            throw NNError("\(url.path): expected the columns class and teacher_class (found \(table.header.joined(separator: ", ")))")
        }
        var map: [String: [String]] = [:]
        for (i, row) in table.rows.enumerated() {
            let name = (row["class"] ?? "").trimmingCharacters(in: .whitespaces)
            let targets = (row["teacher_class"] ?? "").split(whereSeparator: { $0 == ";" || $0 == "|" })
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !name.isEmpty, !targets.isEmpty else { throw NNError("\(url.path): line \(i + 2) needs a class and at least one teacher_class") }
            guard map[name] == nil else { throw NNError("\(url.path): line \(i + 2): class '\(name)' is mapped twice") }
            map[name] = targets
        }
        return map
    }

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
    func batch(_ indices: [Int], labels: [[Int]]) -> Tensor {
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

    /// Where each of `classes` is among the teacher's (its own name, or the teacher classes `map` gives it), or
    /// an error naming those it lacks.
    static func match(_ classes: [String], in teacher: [String], map: [String: [String]] = [:], teacherName: String) throws -> [[Int]] {
        let index = Dictionary(teacher.enumerated().map { (normalised($1), $0) }, uniquingKeysWith: { a, _ in a })
        let unknown = Set(map.keys).subtracting(classes)
        guard unknown.isEmpty else {
            throw NNError("--teacher-classes maps \(unknown.sorted().map { "'\($0)'" }.joined(separator: ", ")), not among the run's classes")
        }
        var missing: [String] = []
        let columns = classes.map { c -> [Int] in
            let names = map[c] ?? [c]
            let found = names.compactMap { index[normalised($0)] }
            if found.count < names.count { missing.append(map[c] == nil ? "'\(c)'" : "'\(c)' (mapped to \(names.filter { index[normalised($0)] == nil }.map { "'\($0)'" }.joined(separator: ", ")))") }
            return found
        }
        guard missing.isEmpty else {
            let shown = missing.prefix(5).joined(separator: ", ") + (missing.count > 5 ? " and \(missing.count - 5) more" : "")
            throw NNError("--teacher \(teacherName): its \(teacher.count) classes lack the run's \(shown) (matched by name, case, _ and - aside); "
                          + "name the teacher's classes for them with --teacher-classes (a class,teacher_class CSV), use a teacher trained on "
                          + "these classes, or a CLAP with --teacher-clap (zero-shot on any names)")
        }
        return columns
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
            guard config.classMap?.isEmpty ?? true else { throw NNError("--teacher-classes is for a classifier teacher; a CLAP is prompted with the class names (--teacher-prompt)") }
            guard !multiLabel else { throw NNError("--teacher-clap: a zero-shot CLAP teaches single-label runs (its scores are a softmax over the class names)") }
            let clap = try CLAP.load(model: URL(fileURLWithPath: config.teacher), tokenizer: config.tokenizer.map { URL(fileURLWithPath: $0) })
            let zeroShot = try ZeroShotClassifier(clap: clap, labels: classes,
                                                  templates: config.templates.isEmpty ? [ZeroShotClassifier.defaultTemplate] : config.templates)
            let scored = try zeroShot.logits(files: paths, progress: { done, total in
                if done == total || done % 500 == 0 { log("teacher: \(done)/\(total) clips") }
            })
            for (path, reason) in scored.skipped { report.recordSkip(path, reason) }
            let z = scored.logits.toArray()
            for (row, path) in scored.paths.enumerated() { byPath[path] = Array(z[(row * classes.count)..<((row + 1) * classes.count)]) }
        } else {
            let teacher = try Classifier.load(ShippedModels.resolve(config.teacher))
            guard multiLabel == false || teacher.multiLabel else {
                throw NNError("--teacher \(config.teacher): a single-label teacher (softmax scores) cannot teach a multi-label run")
            }
            let columns = try match(classes, in: teacher.classes, map: config.classMap ?? [:], teacherName: config.teacher)
            var done = 0
            let skipped = try teacher.classify(paths, batchSize: batchSize) { path, scores in
                byPath[path] = columns.map { cs in
                    // Several teacher classes for one: their probabilities summed (softmax) or the largest (sigmoids).
                    let merged = teacher.multiLabel ? cs.map { scores.scores[$0] }.max()! : cs.reduce(0) { $0 + scores.scores[$1] }
                    let p = min(max(merged, floor), 1 - floor)
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

extension TeacherTargets {
    /// The file in a run folder that keeps the teacher's scores, so a resumed run trains on the scores it began
    /// with and does not score its clips again (hours, for a large teacher over a large transfer set).
    public static let fileName = "teacher_scores.safetensors"

    /// What the scores depend on: the teacher's settings, the run's classes and label kind, and the clips in order.
    static func fingerprint(_ config: DistillationConfig, classes: [String], multiLabel: Bool, records: [ClipRecord]) -> String {
        let settings = (try? JSONEncoder().encode(config)).map { String(decoding: $0, as: UTF8.self) } ?? config.teacher
        let text = ([settings, multiLabel ? "multi" : "single"] + classes + records.map(\.path)).joined(separator: "\n")
        return String(format: "%016llx", Array(text.utf8).withUnsafeBytes { FeatureCache.fnv1a($0) })
    }

    /// Writes the scores (unscored clips as rows of NaN) with their fingerprint.
    func save(to url: URL, fingerprint: String) throws {
        let table = Tensor.zeros([logits.count, classes])
        for (i, row) in logits.enumerated() {
            for c in 0..<classes { table.data[i * classes + c] = row?[c] ?? .nan }
        }
        try SafeTensors.write(["logits": table], to: url, metadata: ["fingerprint": fingerprint, "teacher": config.teacher])
    }

    /// The scores a run kept, where they were made for exactly these settings, classes and clips; nil otherwise.
    static func kept(_ url: URL, fingerprint: String, config: DistillationConfig, classes: Int, multiLabel: Bool, count: Int) -> TeacherTargets? {
        guard let file = try? SafeTensors.read(url), file.metadata["fingerprint"] == fingerprint,
              let table = file.tensors["logits"], table.shape == [count, classes] else { return nil }
        let rows = (0..<count).map { i -> [Float]? in
            let row = (0..<classes).map { table.data[i * classes + $0] }
            return row.allSatisfy(\.isNaN) ? nil : row
        }
        return TeacherTargets(config: config, multiLabel: multiLabel, classes: classes, logits: rows)
    }
}

