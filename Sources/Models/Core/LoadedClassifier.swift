import Audio
import Foundation

/// A classifier model with what it needs to run on new audio: its classes, its feature pipeline, and
/// whether its scores are independent (sigmoid) or one distribution (softmax).
public struct LoadedClassifier {
    public let model: any AudioClassifierModel
    /// One name per output; empty for an encoder-only model (embeddings only).
    public let classes: [String]
    public let pipeline: FeaturePipeline
    public let multiLabel: Bool

    public init(model: any AudioClassifierModel, classes: [String], pipeline: FeaturePipeline, multiLabel: Bool) {
        self.model = model; self.classes = classes; self.pipeline = pipeline; self.multiLabel = multiLabel
    }
}

/// What a released checkpoint does not say about itself, given by the user (the command line's
/// `--labels`, `--norm-mean`, `--fstride`, ...). Every field is optional: nil takes the checkpoint's own
/// value, else its family's recipe default.
public struct ReleasedCheckpointOptions: Sendable {
    public var shape = ReleaseShape()
    /// Normalisation statistics.
    public var mean: Float?, std: Float?
    /// Class names: a CSV with `index` and `display_name` columns (AudioSet's class_labels_indices.csv)
    /// or one name per line.
    public var labels: URL?
    /// Sigmoid (multi-label) or softmax scores.
    public var multiLabel: Bool?

    public init() {}
}

/// The shape facts a bare state dict may not record (the command line's `--fstride`, `--tstride`,
/// `--heads`, `--mel-bins`); nil takes the family's convention.
public struct ReleaseShape: Codable, Sendable, Equatable {
    public var fstride: Int?, tstride: Int?
    public var heads: Int?
    public var melBins: Int?

    public init(fstride: Int? = nil, tstride: Int? = nil, heads: Int? = nil, melBins: Int? = nil) {
        self.fstride = fstride; self.tstride = tstride; self.heads = heads; self.melBins = melBins
    }
}
