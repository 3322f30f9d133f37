import ArgumentParser
import Audio
import Engine
import Foundation
import Inference

extension DatasetCommand {
    /// `earshot dataset events`: a long recording of a dataset's clips at known times, for scoring sound
    /// event detection (`earshot tag --frames --truth`).
    struct Events: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a long recording of one split's clips placed at known times over low noise, with a CSV of the true events.",
            discussion: """
            Clips of --split are shuffled with --seed, trimmed to where they sound (10 ms frames within 30 dB of the clip's \
            loudest) and placed one after another with gaps of --min-gap to --max-gap seconds until --seconds are filled. \
            The CSV (label,onset,offset in seconds) is what `earshot tag --frames --truth` scores against.
            """)
        @Option(help: "A manifest or dataset folder.") var data: String
        @Option(help: "Split name or fold number whose clips are used (keep it out of the tagger's training).") var split: String
        @Option(help: "Length of the recording in seconds.") var seconds = 60.0
        @Option(name: .customLong("sample-rate")) var sampleRate = 32000
        @Option(name: .customLong("min-gap")) var minGap = 1.0
        @Option(name: .customLong("max-gap")) var maxGap = 3.0
        @Option(name: .customLong("noise-db"), help: "Background white noise RMS in dBFS.") var noiseDB: Float = -60
        @Option var seed: UInt64 = 0
        @Option(help: "The recording (.wav).") var out: String
        @Option(help: "The true events (.csv); default: the recording's name with .csv.") var truth: String?

        func validate() throws {
            guard seconds > 0, sampleRate > 0 else { throw ValidationError("--seconds and --sample-rate must be positive") }
            try checkSampleRate(sampleRate)
            // The recording is held in memory and written as one WAV, whose sizes are 32-bit: 2^30 samples at most.
            guard seconds * Double(sampleRate) <= Double(1 << 30) else {
                throw ValidationError("--seconds \(seconds) at \(sampleRate) Hz is more than a WAV holds (2^30 samples: \(Int(Double(1 << 30) / Double(sampleRate))) s)")
            }
            guard minGap >= 0, maxGap >= minGap, maxGap <= seconds else {
                throw ValidationError("--min-gap \(minGap) .. --max-gap \(maxGap) is not a range of seconds within --seconds \(seconds)")
            }
        }

        func run() throws {
            let ds = try Dataset.load(URL(fileURLWithPath: data))
            var records = ds.records.filter { $0.isIn(split: split) && $0.labels.count == 1 }
            guard !records.isEmpty else { throw ValidationError("--split \(split): no single-label clips in \(data)") }
            var rng = RandomGenerator(seed: seed)
            records.shuffle(using: &rng)
            var clips: [(label: String, samples: [Float])] = [], used = 0.0, skipped = 0
            for r in records where used < seconds {
                do {
                    let audio = try Resampler.resample(AudioFile.read(URL(fileURLWithPath: r.path)), to: sampleRate)
                    clips.append((r.labels[0], audio.channels[0]))
                    used += Double(audio.channels[0].count) / Double(sampleRate) + minGap
                } catch { skipped += 1; print("\(r.path): skipped (\(error))") }
            }
            let (samples, events) = EventRecording.make(clips: clips, sampleRate: sampleRate, seconds: seconds,
                                                        gap: minGap...maxGap, noiseDB: noiseDB, seed: seed)
            let wav = URL(fileURLWithPath: out)
            try AudioFile.writeWAV(samples, sampleRate: sampleRate, to: wav, float: true)
            let csv = truth.map { URL(fileURLWithPath: $0) } ?? wav.deletingPathExtension().appendingPathExtension("csv")
            let rows = ["label,onset,offset"] + events.map { String(format: "%@,%.3f,%.3f", $0.label, $0.onset, $0.offset) }
            try (rows.joined(separator: "\n") + "\n").write(to: csv, atomically: true, encoding: .utf8)
            print("\(out): \(seconds) s, \(events.count) events from split \(split)\(skipped > 0 ? ", \(skipped) unreadable clips skipped" : ""); truth in \(csv.path)")
        }
    }
}

/// Reads a truth CSV written by `earshot dataset events` (label,onset,offset).
func readTrueEvents(_ path: String) throws -> [TrueEvent] {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch { throw ValidationError("--truth \(path): cannot read (\(error.localizedDescription))") }
    var lines = text.split(whereSeparator: \.isNewline).map(String.init)
    guard lines.first?.replacingOccurrences(of: " ", with: "") == "label,onset,offset" else {
        throw ValidationError("--truth \(path): expected the header 'label,onset,offset'")
    }
    lines.removeFirst()
    return try lines.enumerated().map { i, line in
        let f = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard f.count == 3, let on = Double(f[1]), let off = Double(f[2]), off >= on else {
            throw ValidationError("--truth \(path): line \(i + 2) '\(line)' is not label,onset,offset with onset <= offset")
        }
        return TrueEvent(label: f[0], onset: on, offset: off)
    }
}
