import Audio
import Engine
import Foundation
import Inference
import NN

/// Where preference pairs come from (`earshot pairs make`): a per-clip score within each class, read
/// from annotation records (UrbanSound8K's salience, vote fractions), a teacher classifier's
/// probability of the clip's class, or synthetic mixtures at two signal-to-noise ratios.
public enum PreferenceSources {
    /// A clip and its score for its own class.
    public struct Scored: Sendable {
        public var record: ClipRecord
        public var score: Double
        public init(record: ClipRecord, score: Double) { self.record = record; self.score = score }
    }

    /// Pairs within each class (a clip's first label): every clip is paired with up to
    /// `partnersPerClip` others of its class, drawn at random (seeded), each unordered pair once; the
    /// clip with the higher score (or the lower, with `higherWins` false) wins, and scores within
    /// `tieMargin` of each other tie.
    public static func pairs(_ clips: [Scored], partnersPerClip: Int, higherWins: Bool = true, tieMargin: Double = 0,
                             seed: UInt64) -> [PreferencePair] {
        var byClass: [String: [Int]] = [:]
        for (i, c) in clips.enumerated() { if let l = c.record.labels.first { byClass[l, default: []].append(i) } }
        var generator = RandomGenerator(seed: seed)
        var seen = Set<[Int]>(), out: [PreferencePair] = []
        for label in byClass.keys.sorted() {
            let members = byClass[label]!
            for i in members {
                var others = members.filter { $0 != i }
                generator.shuffle(&others)
                for j in others.prefix(partnersPerClip) where seen.insert([min(i, j), max(i, j)]).inserted {
                    let gap = clips[i].score - clips[j].score
                    let target: Float = Swift.abs(gap) <= tieMargin ? 0.5 : ((gap > 0) == higherWins ? 1 : 0)
                    out.append(PreferencePair(a: clips[i].record.path, b: clips[j].record.path, label: label, target: target))
                }
            }
        }
        return out
    }

    /// Scores from a metadata column (UrbanSound8K's `salience`: 1 foreground, 2 background, so the
    /// lower value wins there). Clips without a numeric value are counted in `missing`, not scored.
    public static func column(_ records: [ClipRecord], metadata: URL, column: String) throws -> (scored: [Scored], missing: Int) {
        let values = try MetadataColumn.read(metadata, column: column)
        var scored: [Scored] = [], missing = 0
        for r in records {
            guard let cell = values[URL(fileURLWithPath: r.path).standardizedFileURL.path], let v = Double(cell) else { missing += 1; continue }
            scored.append(Scored(record: r, score: v))
        }
        return (scored, missing)
    }

    /// Scores from vote fractions: a clip's fraction for its own class.
    public static func votes(_ records: [ClipRecord], votes: [String: [Float]], classes: [String]) -> (scored: [Scored], missing: Int) {
        var scored: [Scored] = [], missing = 0
        for r in records {
            guard let v = votes[r.path], let y = r.labels.first.flatMap(classes.firstIndex(of:)) else { missing += 1; continue }
            scored.append(Scored(record: r, score: Double(v[y])))
        }
        return (scored, missing)
    }

    /// Scores from a teacher classifier: its probability of each clip's label (the teacher must know
    /// the label, and must not have been trained on clips the student is evaluated on).
    public static func teacher(_ data: Dataset, classifier: Classifier, batchSize: Int = 8, report: SkipReport,
                               progress: ((String) -> Void)? = nil) throws -> [Scored] {
        var scored: [Scored] = []
        _ = try evaluate(classifier, on: data, batchSize: batchSize, report: report, progress: progress) { record, scores in
            guard let label = record.labels.first, let k = scores.classes.firstIndex(of: label) else { return }
            scored.append(Scored(record: record, score: Double(scores.scores[k])))
        }
        return scored
    }
}

/// Synthetic preferences: each source clip mixed over another clip's sound (of another class) at a
/// high and a low signal-to-noise ratio; the high-SNR mixture of a clip is preferred to its low-SNR
/// one, and, so that the heads see more than one clip's two versions, a clip's high-SNR mixture is
/// also preferred to another clip's (same class) low-SNR mixture when the gap is at least `minGap` dB.
public struct SNRMixer {
    public var highSNR: Float = 20
    public var lowSNR: Float = 0
    /// Pairs of different clips per source clip (at SNR gap high − low, which must reach `minGap`).
    public var crossPairs = 1
    public var minGap: Float = 10
    public var seed: UInt64 = 0
    public init() {}

    /// Mixes s + g·n with n the noise clip looped or cut to s's length (resampled to s's rate) and
    /// g = rms(s) / (rms(n) · 10^(snr/20)); the mixture is scaled down if its peak passes 0.99.
    public static func mix(_ source: [Float], noise: [Float], snr: Float) -> [Float]? {
        guard !source.isEmpty, !noise.isEmpty else { return nil }
        let n = (0..<source.count).map { noise[$0 % noise.count] }
        func rms(_ x: [Float]) -> Float { (x.reduce(0) { $0 + $1 * $1 } / Float(x.count)).squareRoot() }
        let (rs, rn) = (rms(source), rms(n))
        guard rs > 0, rn > 0 else { return nil }
        let g = rs / (rn * Foundation.pow(10, snr / 20))
        var mixed = zip(source, n).map { $0 + g * $1 }
        let peak = mixed.map(Swift.abs).max() ?? 0
        if peak > 0.99 { mixed = mixed.map { $0 * 0.99 / peak } }
        return mixed
    }

    /// Writes two mixtures per source clip into `folder` (`<name>_snr<high>.wav`, `<name>_snr<low>.wav`)
    /// and returns their records (label, speaker and split of the source) and the pairs. Unreadable or
    /// silent clips are skipped and named in `report`.
    public func make(sources: [ClipRecord], noisePool: [ClipRecord], folder: URL, report: SkipReport,
                     log: (String) -> Void = { _ in }) throws -> (records: [ClipRecord], pairs: [PreferencePair]) {
        // SNRs name the mixture files (as whole dB) and cross pairs count partners: values outside these
        // trapped converting to Int or taking a negative prefix.
        guard highSNR.isFinite, lowSNR.isFinite, abs(highSNR) <= 200, abs(lowSNR) <= 200 else {
            throw NNError("pairs make --from snr: SNRs \(highSNR) and \(lowSNR) dB must be finite, within ±200 dB")
        }
        guard crossPairs >= 0 else { throw NNError("pairs make --from snr: --cross-pairs \(crossPairs) must not be negative") }
        guard highSNR - lowSNR >= minGap else {
            throw NNError("pairs make --from snr: the SNR gap \(highSNR - lowSNR) dB is below --min-gap \(minGap) dB")
        }
        guard noisePool.count >= 2 else { throw NNError("pairs make --from snr: needs at least two clips to mix") }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var generator = RandomGenerator(seed: seed)
        var records: [ClipRecord] = [], pairs: [PreferencePair] = []
        var versions: [String: [(clean: String, noisy: String)]] = [:]   // per label
        func tag(_ snr: Float) -> String { snr == snr.rounded() ? String(Int(snr)) : String(snr) }
        for (i, source) in sources.enumerated() {
            guard let label = source.labels.first else { continue }
            let audio: AudioBuffer
            do { audio = try AudioFile.read(URL(fileURLWithPath: source.path)) } catch { report.recordSkip(source.path, "\(error)"); continue }
            // Noise from another class where there is one (another clip at all otherwise).
            let others = noisePool.filter { $0.path != source.path && $0.labels.first != label }
            let pool = others.isEmpty ? noisePool.filter { $0.path != source.path } : others
            var mixtures: [[Float]]? = nil
            for _ in 0..<3 where mixtures == nil {
                let noiseRecord = pool[Int(generator.next() % UInt64(pool.count))]
                guard let noise = try? AudioFile.read(URL(fileURLWithPath: noiseRecord.path)),
                      let samples = try? Resampler.resample(noise.mono, from: noise.sampleRate, to: audio.sampleRate) else { continue }
                if let high = Self.mix(audio.mono, noise: samples, snr: highSNR), let low = Self.mix(audio.mono, noise: samples, snr: lowSNR) {
                    mixtures = [high, low]
                }
            }
            guard let mixtures else { report.recordSkip(source.path, "silent, or no readable clip to mix it with"); continue }
            let stem = URL(fileURLWithPath: source.path).deletingPathExtension().lastPathComponent + "-\(i)"
            var paths: [String] = []
            for (snr, samples) in zip([highSNR, lowSNR], mixtures) {
                let url = folder.appendingPathComponent("\(stem)_snr\(tag(snr)).wav")
                try AudioFile.writeWAV(samples, sampleRate: audio.sampleRate, to: url)
                paths.append(url.path)
                records.append(ClipRecord(path: url.path, labels: [label], speaker: source.speaker, fold: source.fold, split: source.split))
            }
            pairs.append(PreferencePair(a: paths[0], b: paths[1], label: label, target: 1))
            versions[label, default: []].append((paths[0], paths[1]))
        }
        // Different clips of one class: one clip's high-SNR version over another's low-SNR one.
        for label in versions.keys.sorted() {
            let v = versions[label]!
            guard v.count >= 2 else { continue }
            for (i, mine) in v.enumerated() {
                var others = Array(v.indices.filter { $0 != i })
                generator.shuffle(&others)
                for j in others.prefix(crossPairs) {
                    pairs.append(PreferencePair(a: mine.clean, b: v[j].noisy, label: label, target: 1))
                }
            }
        }
        log("mixed \(records.count / 2) clips at \(tag(highSNR)) and \(tag(lowSNR)) dB SNR into \(folder.path): \(pairs.count) pairs")
        return (records, pairs)
    }

    /// A CSV manifest (`path,label,speaker,fold,split`) the dataset loader reads: `records` with
    /// absolute paths.
    public static func writeManifest(_ records: [ClipRecord], to url: URL) throws {
        var text = "path,label,speaker,fold,split\n"
        for r in records {
            text += [URL(fileURLWithPath: r.path).standardizedFileURL.path, r.labels.joined(separator: ";"), r.speaker ?? "",
                     r.fold.map(String.init) ?? "", r.split ?? ""].map(PreferenceFile.csvField).joined(separator: ",") + "\n"
        }
        try Data(text.utf8).write(to: url, options: .atomic)
    }
}
