import Engine
import Foundation

extension ZeroShotClassifier {
    /// Labels of a comma-separated list ("dog, rain,siren"): each trimmed; an empty entry is kept so the
    /// classifier names its position.
    public static func labels(list: String) -> [String] {
        let parts = list.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        return parts.count == 1 && parts[0].isEmpty ? [] : parts
    }

    /// Labels of a file, one per line (labels may hold commas); blank lines and lines starting with #
    /// are skipped.
    public static func labels(file url: URL) throws -> [String] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw CLAPError("\(url.path): cannot read the labels file (\(error.localizedDescription))")
        }
        let labels = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard !labels.isEmpty else { throw CLAPError("\(url.path): no labels in the file (one per line)") }
        return labels
    }

    /// Per clip, the labels with their probabilities, most probable first (at most `top`), of unit
    /// audio embeddings, row-major [clips, P].
    public func ranked(audioEmbeddings rows: [Float], top: Int? = nil) throws -> [[(label: String, probability: Float)]] {
        let p = clap.model.projectionDim
        guard !rows.isEmpty else { return [] }
        let a = try Tensor(rows, shape: [rows.count / p, p])
        let probs = try GradMode.noGrad { try logits(audioEmbeddings: a).softmax(axis: -1) }
        let k = labels.count, values = probs.toArray()
        return (0..<a.shape[0]).map { b in
            let row = (0..<k).map { (label: labels[$0], probability: values[b * k + $0]) }
            // Stable: equal probabilities keep the labels' order.
            let order = row.indices.sorted { row[$0].probability > row[$1].probability || (row[$0].probability == row[$1].probability && $0 < $1) }
            return order.prefix(top ?? k).map { row[$0] }
        }
    }
}
