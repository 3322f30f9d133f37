import Audio
import CLAP
import Engine
import Foundation
import NN

extension PreferenceSources {
    /// A CLAP as the teacher (P2C's preferences from a larger model, here zero-shot): each clip's
    /// probability of its own class among the data's classes,
    ///
    ///     p(c | clip) = softmax_k(exp(s_a) · ⟨a, t_k⟩)_c,   t_k = the renormalised mean of class k's prompts,
    ///
    /// class k prompted by `prompts[k]` (default: its name) in every template. Nothing is trained, so
    /// the teacher can score classes no classifier here has seen. Unreadable clips go to `report`.
    public static func clapTeacher(_ data: Dataset, clap: CLAP, prompts: [String: String] = [:],
                                   templates: [String] = [ZeroShotClassifier.defaultTemplate], report: SkipReport,
                                   progress: ((Int, Int) -> Void)? = nil) throws -> [Scored] {
        let classes = data.classes
        guard classes.count >= 2 else { throw NNError("teacher: a zero-shot teacher needs at least two classes (the data has \(classes.count))") }
        let zeroShot = try ZeroShotClassifier(clap: clap, labels: classes.map { prompts[$0] ?? $0 }, templates: templates)
        // One score a clip: a manifest may list a clip once per caption.
        var seen = Set<String>()
        let records = data.records.filter { !$0.labels.isEmpty && seen.insert($0.path).inserted }
        let scored = try zeroShot.logits(files: records.map(\.path), progress: progress)
        for (path, reason) in scored.skipped { report.recordSkip(path, reason) }
        guard !scored.paths.isEmpty else { return [] }
        let p = try scored.logits.softmax(axis: -1).toArray()
        let byPath = Dictionary(uniqueKeysWithValues: records.map { ($0.path, $0) })
        return scored.paths.enumerated().compactMap { row, path in
            guard let record = byPath[path], let label = record.labels.first, let k = classes.firstIndex(of: label) else { return nil }
            return Scored(record: record, score: Double(p[row * classes.count + k]))
        }
    }
}
