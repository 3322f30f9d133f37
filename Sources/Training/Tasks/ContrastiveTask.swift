import Audio
import CLAP
import Engine
import Foundation
import Inference
import NN
import Text

/// Contrastive language-audio training (LAION-CLAP's objective) of an `AudioTextModel`: each clip of a
/// batch is paired with one of its captions, drawn at random every time the clip is seen (one draw
/// per clip per epoch), and the symmetric InfoNCE loss (`AudioTextModel.contrastiveLoss`, `.laion`)
/// trains both towers, both projections and the logit scale. The mean of audio→text and text→audio
/// R@1 on the validation clips (every caption of theirs counting, `retrievalScores`) chooses the
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

    /// R@1/5/10 and mAP@10 both ways of the clips `loader` reads against every distinct caption of theirs.
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
        var out = try retrievalScores(audio: audio, text: try Tensor.concat(textRows, axis: 0), relevant: relevant)
        out["clips"] = Double(indices.count); out["captions"] = Double(texts.count)
        return out
    }

    /// `RetrievalMetrics` (R@1/5/10, mAP@10 both ways) of unit embeddings A [N, P] and T [M, P], S = A Tᵀ,
    /// where clip i is relevant to the texts `relevant[i]` (a caption may be relevant to several clips),
    /// as flat metrics: `audio_to_text_R@1`, …, `text_to_audio_mAP@10`, and `mean_R@1` (the selection
    /// metric: the mean of both directions' R@1).
    public static func retrievalScores(audio a: Tensor, text t: Tensor, relevant: [Set<Int>]) throws -> [String: Double] {
        guard a.rank == 2, t.rank == 2, relevant.count == a.shape[0] else {
            throw NNError("retrieval: audio \(a.shape), text \(t.shape) and \(relevant.count) relevance sets do not match")
        }
        let sim = try GradMode.noGrad { try a.matmul(t.transpose(0, 1)) }.toArray()
        let (a2t, t2a) = try RetrievalMetrics.evaluate(similarity: sim, clips: a.shape[0], captions: t.shape[0],
                                                       relevant: relevant.map { $0.sorted() })
        var out: [String: Double] = [:]
        for (name, s) in [("audio_to_text", a2t), ("text_to_audio", t2a)] {
            out["\(name)_R@1"] = s.r1; out["\(name)_R@5"] = s.r5; out["\(name)_R@10"] = s.r10; out["\(name)_mAP@10"] = s.mAP10
        }
        out["mean_R@1"] = (a2t.r1 + t2a.r1) / 2
        return out
    }

    public func validate() throws -> [String: Any] {
        try Self.retrieval(model, tokenizer: tokenizer, loader: validation, captions: validationCaptions, batchSize: validation.batchSize)
    }
}
