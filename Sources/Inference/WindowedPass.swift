import Audio
import Engine
import Foundation

/// One pass over audio files that covers every clip from its first frame to its last: each clip's
/// features (natural length, padded up to one window when shorter) are cut into windows of the model's
/// input, `hop` frames apart with the last window ending at the clip's last frame, and the model's
/// outputs averaged over a clip's windows (or, with `onePass`, each whole clip run at once). Clips load
/// in parallel, the next chunk while the model runs on the current one; unreadable ones are skipped and
/// named in `report`.
struct WindowedPass {
    let pipeline: FeaturePipeline
    let window: Int
    let batchSize: Int
    /// Every clip in one pass of its own ([1, T, F], batch 1 since lengths differ), no windows: for
    /// models that take any length (`Classifier.onePass`).
    var onePass = false
    /// What a shorter clip is padded to (`Classifier.minimumFrames`: a one-pass model's minimum); nil: one window.
    var minimumFrames: Int? = nil

    /// Clips at least this long (82 s of 10 ms frames) run one-pass after the buffer pool is emptied.
    static let longClipFrames = 8192

    /// Window starts for `frames` frames: [0] when the clip fits, else every `hop` and the last window.
    static func starts(frames: Int, window: Int, hop: Int) -> [Int] {
        guard frames > window, window > 0 else { return [0] }
        var starts = Array(stride(from: 0, to: frames - window, by: max(hop, 1)))
        starts.append(frames - window)
        return starts
    }

    /// Features of a clip at its natural length (at least `window` frames), normalised as `pipeline` does.
    static func clipFeatures(_ url: URL, pipeline: FeaturePipeline, window: Int) throws -> (Tensor, AudioTruncation?) {
        var raw = pipeline
        (raw.targetFrames, raw.mean, raw.std) = (nil, nil, nil)
        var (x, truncated) = try raw.featuresNotingTruncation(of: url, repeatPadTo: window)
        // Padding comes before normalisation, as in the pipeline, with the front end's pad value.
        if x.shape[0] < window { x = try pipeline.padOrCut(x, to: window) }
        if let mean = pipeline.mean, let std = pipeline.std { x = FeatureFrames.normalize(x, mean: mean, std: std) }
        return (x, truncated)
    }

    /// The mean of `f` over the windows of each clip [T, F] in `clips`, run in batches of at most
    /// `batchSize` windows: one [K] row per clip.
    static func windowMeans(_ clips: [Tensor], window: Int, batchSize: Int, _ f: (Tensor) throws -> Tensor) throws -> [Tensor] {
        // (clip, start) of every window; each batch's windows are cut only when it runs. Cut all at once,
        // half-overlapping windows held twice the clip's features: 100 MB more per half hour of audio.
        var windows: [(clip: Int, start: Int)] = []
        for (i, x) in clips.enumerated() {
            for s in starts(frames: x.shape[0], window: window, hop: window / 2) { windows.append((i, s)) }
        }
        let owner = windows.map(\.clip)
        var outputs: [Tensor] = []
        for b in stride(from: 0, to: windows.count, by: batchSize) {
            let batch = try windows[b..<min(b + batchSize, windows.count)].map { try clips[$0.clip].slice(axis: 0, start: $0.start, end: $0.start + window) }
            let y = try f(Tensor.stack(batch))
            for r in 0..<y.shape[0] { outputs.append(try y.slice(axis: 0, start: r, end: r + 1).squeeze(0)) }
        }
        var sums = [Tensor?](repeating: nil, count: clips.count), counts = [Int](repeating: 0, count: clips.count)
        for (o, i) in zip(outputs, owner) {
            sums[i] = try sums[i].map { try $0 + o } ?? o
            counts[i] += 1
        }
        return zip(sums, counts).map { s, n in s! * (1 / Float(n)) }
    }

    /// Runs `f` (features [W, window, F] → [W, K], under no-grad) over every clip of `paths`; `body`
    /// gets each readable clip's index in `paths` and its mean output [K], in order.
    func run(_ paths: [String], report: SkipReport, label: String, progress: ((String) -> Void)?,
             _ f: (Tensor) throws -> Tensor, _ body: (Int, Tensor) throws -> Void) throws {
        let chunks = stride(from: 0, to: paths.count, by: batchSize).map { Array($0..<min($0 + batchSize, paths.count)) }
        guard !chunks.isEmpty else { return }
        var meter = progress.map { Progress(total: paths.count, label: label, onlyIfSlow: true, log: $0) }
        let queue = DispatchQueue(label: "earshot.windowed-pass")
        let (pipeline, window, padTo) = (self.pipeline, self.window, minimumFrames ?? self.window)
        func start(_ chunk: [Int]) -> (DispatchGroup, ResultBox) {
            let group = DispatchGroup(), box = ResultBox()
            queue.async(group: group) {
                box.results = (try? parallelMap(chunk) { i in
                    Result { try WindowedPass.clipFeatures(URL(fileURLWithPath: paths[i]), pipeline: pipeline, window: padTo) }
                }) ?? []
            }
            return (group, box)
        }
        var pending = start(chunks[0]), done = 0
        for (k, chunk) in chunks.enumerated() {
            pending.0.wait()
            let results = pending.1.results
            if k + 1 < chunks.count { pending = start(chunks[k + 1]) }
            var clips: [Tensor] = [], kept: [Int] = []
            for (i, r) in zip(chunk, results) {
                switch r {
                case .success(let (x, truncated)):
                    clips.append(x); kept.append(i)
                    if let truncated { report.recordTruncated(paths[i], truncated) }
                case .failure(let e): report.recordSkip(paths[i], "\(e)")
                }
            }
            let means = try GradMode.noGrad {
                onePass ? try clips.map { x in
                            // A long recording's feature buffers (waveform, spectrogram: ~100 MB for ten
                            // minutes) would sit in the engine's pool through the model pass; give them back first.
                            if x.shape[0] >= WindowedPass.longClipFrames { Memory.releaseCachedBuffers() }
                            return try f(x.unsqueeze(0)).squeeze(0)
                        }
                        : try WindowedPass.windowMeans(clips, window: window, batchSize: batchSize, f)
            }
            for (i, m) in zip(kept, means) { try body(i, m) }
            done += chunk.count
            meter?.update(done, "clips")
        }
    }

    final class ResultBox: @unchecked Sendable { var results: [Result<(Tensor, AudioTruncation?), Error>] = [] }
}
