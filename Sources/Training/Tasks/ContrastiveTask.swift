import Audio
import CLAP
import Engine
import Foundation
import NN
import Text

/// Retrieval recall with relevance sets: clip i is relevant to text j where `relevant[i]` holds j (a
/// clip may have several captions, and a caption several clips: "the sound of rain"). With unit
/// embeddings A [N, P] and T [M, P] and similarity S = A Tᵀ:
/// - audio→text R@k = mean over clips of [a relevant text is among the clip's k most similar texts];
/// - text→audio R@k = mean over texts of [a relevant clip is among the text's k most similar clips].
/// With one caption per clip this is the usual R@k; with AudioCaps' five, LAION's audio→text "any of
/// the captions". Kept minimal here (R@k only); the CLI's retrieval evaluation adds mAP@10.
public enum RetrievalRecall {
    public static func recall(audio a: Tensor, text t: Tensor, relevant: [Set<Int>], ks: [Int] = [1, 5]) throws -> [String: Double] {
        let (n, m) = (a.shape[0], t.shape[0])
        guard a.rank == 2, t.rank == 2, relevant.count == n, n > 0, m > 0 else {
            throw NNError("retrieval recall: audio \(a.shape), text \(t.shape) and \(relevant.count) relevance sets do not match")
        }
        let sim = try GradMode.noGrad { try a.matmul(t.transpose(0, 1)) }.toArray()
        var textToClips = [Set<Int>](repeating: [], count: m)
        for (i, r) in relevant.enumerated() { for j in r { textToClips[j].insert(i) } }
        /// Rank (0-based) of the best relevant item in one row of scores.
        func bestRank(_ scores: [Float], _ relevant: Set<Int>) -> Int {
            guard let best = relevant.map({ scores[$0] }).max() else { return Int.max }
            return scores.filter { $0 > best }.count
        }
        let audioRanks = (0..<n).map { i in bestRank(Array(sim[(i * m)..<((i + 1) * m)]), relevant[i]) }
        let queries = (0..<m).filter { !textToClips[$0].isEmpty }
        let textRanks = queries.map { j in bestRank((0..<n).map { sim[$0 * m + j] }, textToClips[j]) }
        var out: [String: Double] = [:]
        for k in ks {
            out["audio_to_text_R@\(k)"] = Double(audioRanks.filter { $0 < k }.count) / Double(n)
            out["text_to_audio_R@\(k)"] = Double(textRanks.filter { $0 < k }.count) / Double(max(queries.count, 1))
        }
        out["mean_R@1"] = ((out["audio_to_text_R@1"] ?? 0) + (out["text_to_audio_R@1"] ?? 0)) / 2
        return out
    }
}

/// Contrastive language-audio training (LAION-CLAP's objective) of an `AudioTextModel`: each clip of a
/// batch is paired with one of its captions, drawn at random every time the clip is seen (one draw
/// per clip per epoch), and the symmetric InfoNCE loss (`AudioTextModel.contrastiveLoss`, `.laion`)
/// trains both towers, both projections and the logit scale. The mean of audio→text and text→audio
/// R@1 on the validation clips (every caption of theirs counting, `RetrievalRecall`) chooses the
/// checkpoint.
public final class ContrastiveTask: TrainingTask {
    public let model: AudioTextModel
    public let tokenizer: any TextTokenizer
    /// Captions of the training loader's records, by record index.
    let captions: [[String]]
    let validation: FeatureLoader
    let validationCaptions: [[String]]
    let metadata: [String: String]
    /// Captions cut at the tokenizer's length so far (said once, at the end, by the caller).
    public private(set) var truncatedCaptions = 0

    public init(model: AudioTextModel, tokenizer: any TextTokenizer, captions: [[String]], validation: FeatureLoader,
                validationCaptions: [[String]], metadata: [String: String]) throws {
        if let i = captions.firstIndex(where: \.isEmpty) { throw NNError("contrastive: training clip \(i) has no caption") }
        if let i = validationCaptions.firstIndex(where: \.isEmpty) { throw NNError("contrastive: validation clip \(i) has no caption") }
        self.model = model; self.tokenizer = tokenizer; self.captions = captions; self.validation = validation
        self.validationCaptions = validationCaptions; self.metadata = metadata
    }

    public var module: Module { model }
    public var selectionMetric: String { "mean_R@1" }
    public var checkpointMetadata: [String: String] { metadata }

    public func loss(_ batch: TrainingBatch, generator: inout RandomGenerator) throws -> (loss: Tensor, metrics: [String: Double]) {
        let texts = batch.indices.map { i -> String in
            let options = captions[i]
            return options[options.count == 1 ? 0 : Int(generator.next() % UInt64(options.count))]
        }
        let tokens = tokenizer.encode(batch: texts)
        truncatedCaptions += tokens.truncatedCount
        let a = try model.audioEmbeddings(batch.features)
        let t = try model.textEmbeddings(tokens)
        let loss = try model.contrastiveLoss(audio: a, text: t)
        return (loss, ["logit_scale": Double(try model.audioLogitScale.item())])
    }

    /// Unit audio embeddings of every clip `loader` reads, with the record index of each row.
    public static func audioEmbeddings(_ model: AudioTextModel, loader: FeatureLoader) throws -> (embeddings: Tensor, indices: [Int]) {
        var rows: [Tensor] = [], indices: [Int] = []
        try loader.forEachBatch(epoch: 0) { batch in
            rows.append(try GradMode.noGrad { try model.audioEmbeddings(batch.features) })
            indices += batch.indices
        }
        guard !rows.isEmpty else { throw NNError("contrastive: no clip of \(loader.dataset.records.count) could be read") }
        return (try Tensor.concat(rows, axis: 0), indices)
    }

    /// R@1 and R@5 both ways of the clips `loader` reads against every distinct caption of theirs.
    public static func retrieval(_ model: AudioTextModel, tokenizer: any TextTokenizer, loader: FeatureLoader,
                                 captions: [[String]], batchSize: Int) throws -> [String: Double] {
        let (audio, indices) = try audioEmbeddings(model, loader: loader)
        var texts: [String] = [], position: [String: Int] = [:]
        let relevant = indices.map { i -> Set<Int> in
            Set(captions[i].map { c in
                if let j = position[c] { return j }
                position[c] = texts.count; texts.append(c); return texts.count - 1
            })
        }
        var textRows: [Tensor] = []
        for start in stride(from: 0, to: texts.count, by: max(batchSize, 1)) {
            let chunk = Array(texts[start..<min(start + max(batchSize, 1), texts.count)])
            textRows.append(try GradMode.noGrad { try model.textEmbeddings(tokenizer.encode(batch: chunk)) })
        }
        var out = try RetrievalRecall.recall(audio: audio, text: try Tensor.concat(textRows, axis: 0), relevant: relevant)
        out["clips"] = Double(indices.count); out["captions"] = Double(texts.count)
        return out
    }

    public func validate() throws -> [String: Any] {
        try Self.retrieval(model, tokenizer: tokenizer, loader: validation, captions: validationCaptions, batchSize: validation.batchSize)
    }
}
