import Audio
import Engine
import Foundation

/// Generates a spoken-keyword dataset with Debian's espeak-ng: each word in many voices, speeds and
/// pitches, placed at a random offset in a fixed-length clip over generated background sound (white,
/// pink or brown noise, mains hum, a distant tone) at 5-25 dB SNR. The test voices are held out as the
/// test split, so the score measures generalisation to unseen speakers. No download needed.
public struct KeywordCorpus: Sendable {
    public var words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    /// Voices are espeak-ng accents with its male (m1-m7) and female (f1-f5) variants; the test voices
    /// are variants never heard in training.
    public var trainVoices = ["en+m1", "en+m3", "en+m5", "en+m7", "en+f1", "en+f3", "en+f5", "en+m2",
                              "en-us+m2", "en-us+m6", "en-us+f2", "en-us+f4", "en-us+m5",
                              "en-gb-scotland+m3", "en-gb-scotland+f1", "en-029+m4", "en-029+f3",
                              "en-gb-x-rp+m6", "en-gb-x-rp+f5", "en-gb-x-rp+f2"]
    public var testVoices = ["en+m4", "en+f4", "en-us+m3"]
    public var speeds = [130, 160, 190]
    public var pitches = [35, 65]
    public var seconds = 0.96
    public var sampleRate = 16000
    public var seed: UInt64 = 0
    public init() {}

    public var clipCount: Int { words.count * (trainVoices.count + testVoices.count) * speeds.count * pitches.count }

    /// Writes the clips and `manifest.jsonl` under `dir` (reusing a complete earlier corpus). Clips are
    /// synthesised on every engine thread; each clip's randomness is seeded by its index, so the corpus
    /// is the same whatever the thread count.
    public func generate(in dir: URL, log: (String) -> Void = { print($0) }) throws -> URL {
        let manifest = dir.appendingPathComponent("manifest.jsonl")
        if let text = try? String(contentsOf: manifest, encoding: .utf8), text.split(separator: "\n").count == clipCount { return manifest }
        guard let espeak = ["/usr/bin/espeak-ng", "/usr/local/bin/espeak-ng"].first(where: FileManager.default.isExecutableFile) else {
            throw AudioError("espeak-ng is not installed (apt-get install espeak-ng; scripts/setup.sh does this)")
        }
        for word in words {
            try FileManager.default.createDirectory(at: dir.appendingPathComponent(word), withIntermediateDirectories: true)
        }
        let jobs = words.flatMap { word in (trainVoices + testVoices).flatMap { voice in speeds.flatMap { speed in
            pitches.map { pitch in (word: word, voice: voice, speed: speed, pitch: pitch) }
        } } }
        let lines = try parallelMap(Array(jobs.indices)) { i -> String in
            let (word, voice, speed, pitch) = jobs[i]
            let name = "\(word)/\(voice.replacingOccurrences(of: "+", with: "_"))_s\(speed)_p\(pitch).wav"
            try synthesise(word, voice: voice, speed: speed, pitch: pitch, espeak: espeak, clipIndex: i,
                           to: dir.appendingPathComponent(name))
            let split = testVoices.contains(voice) ? "test" : "train"
            return "{\"path\": \"\(name)\", \"label\": \"\(word)\", \"speaker\": \"\(voice)\", \"split\": \"\(split)\"}"
        }
        log("generated \(lines.count) clips")
        try lines.joined(separator: "\n").appending("\n").write(to: manifest, atomically: true, encoding: .utf8)
        return manifest
    }

    /// One clip: espeak-ng speech, resampled, silence-trimmed and mixed over generated background.
    func synthesise(_ word: String, voice: String, speed: Int, pitch: Int, espeak: String, clipIndex: Int, to url: URL) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".tts-\(UUID().uuidString).wav")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: espeak)
        p.arguments = ["-v", voice, "-s", "\(speed)", "-p", "\(pitch)", "-w", tmp.path, word]
        p.standardError = FileHandle.nullDevice
        try p.run(); p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw AudioError("espeak-ng failed for voice \(voice) (status \(p.terminationStatus))") }
        let speech = try AudioFile.read(tmp)
        let wave = trimSilence(try Resampler.resample(speech.mono, from: speech.sampleRate, to: sampleRate))
        var g = RandomGenerator(seed: seed &+ UInt64(clipIndex) &* 0x9E37_79B9_7F4A_7C15)
        try AudioFile.writeWAV(mix(speech: wave, length: Int(seconds * Double(sampleRate)), generator: &g), sampleRate: sampleRate, to: url)
    }

    func trimSilence(_ x: [Float]) -> [Float] {
        let threshold: Float = 0.01
        guard let first = x.firstIndex(where: { abs($0) > threshold }), let last = x.lastIndex(where: { abs($0) > threshold }) else { return x }
        return Array(x[first...last])
    }

    func mix(speech: [Float], length: Int, generator g: inout RandomGenerator) -> [Float] {
        var out = [Float](repeating: 0, count: length)
        let s = Array(speech.prefix(length))
        let offset = Int(g.nextUniform() * Float(max(length - s.count, 0)))
        let gain = 0.3 + 0.6 * g.nextUniform()
        let peak = max(s.map(abs).max() ?? 1, 1e-3)
        for (i, v) in s.enumerated() { out[offset + i] = v / peak * gain }
        // Background: one of five generated sounds, scaled to a random SNR against the speech.
        var bg = [Float](repeating: 0, count: length)
        var b0: Float = 0, b1: Float = 0, b2: Float = 0
        let kind = Int(g.next() % 5), f = 50 + 400 * g.nextUniform()
        for i in 0..<length {
            let w = g.nextNormal()
            switch kind {
            case 0: bg[i] = w
            case 1: b0 = 0.997 * b0 + 0.03 * w; b1 = 0.985 * b1 + 0.03 * w; b2 = 0.95 * b2 + 0.03 * w; bg[i] = b0 + b1 + b2 + 0.02 * w
            case 2: b0 = 0.995 * b0 + 0.05 * w; bg[i] = b0
            case 3: bg[i] = Float(sin(2 * Double.pi * 50 * Double(i) / Double(sampleRate))) + 0.3 * Float(sin(2 * Double.pi * 150 * Double(i) / Double(sampleRate)))
            default: bg[i] = Float(sin(2 * Double.pi * Double(f) * Double(i) / Double(sampleRate))) * (0.5 + 0.5 * Float(sin(Double(i) / 3000)))
            }
        }
        let snr = 5 + 20 * g.nextUniform()
        let ps = s.map { $0 / peak * gain }.reduce(0) { $0 + $1 * $1 } / Float(max(s.count, 1))
        let pb = bg.reduce(0) { $0 + $1 * $1 } / Float(length)
        let scale = pb > 0 ? (ps / (pb * Foundation.pow(10, snr / 10))).squareRoot() : 0
        for i in 0..<length { out[i] = max(-1, min(1, out[i] + scale * bg[i])) }
        return out
    }
}
