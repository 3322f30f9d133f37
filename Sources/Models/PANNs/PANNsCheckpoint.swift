import Audio
import Engine
import Foundation
import NN

/// The released PANNs checkpoints (`Cnn14_mAP=0.431.pth`, ...: `{'iteration', 'model': state_dict,
/// 'sampler'}`, no `module.` prefix) mapped onto `PANNs`: `conv_block<k>.` becomes `blocks.<k-1>.`; the
/// torchlibrosa front end's frozen buffers (`spectrogram_extractor.stft.conv_{real,imag}.weight`,
/// `logmel_extractor.melW`) are not weights here but they are checked: they say which sample rate,
/// window and mel range the model was trained on.
public enum PANNsCheckpoint {
    static let frontEndPrefixes = ["spectrogram_extractor.", "logmel_extractor."]

    /// Whether a parsed `.pth` state (the wrapper's `model.` prefix already removed) is a PANNs CNN.
    public static func isPANNs(_ state: [String: Tensor]) -> Bool {
        state["conv_block1.conv1.weight"] != nil && state["fc1.weight"] != nil
    }

    /// The state dict inside a `.pth` as `TorchCheckpoint.read` returns it: under `model.` (the released
    /// wrapper) or bare, with any DataParallel `module.` prefix dropped.
    public static func unwrapped(_ raw: [String: Tensor]) -> [String: Tensor] {
        var state = raw
        if raw.keys.contains(where: { $0.hasPrefix("model.") }) {
            state = Dictionary(uniqueKeysWithValues: raw.compactMap { k, v in k.hasPrefix("model.") ? (String(k.dropFirst(6)), v) : nil })
        }
        if state.keys.allSatisfy({ $0.hasPrefix("module.") }) {
            state = Dictionary(uniqueKeysWithValues: state.map { (String($0.key.dropFirst(7)), $0.value) })
        }
        return state
    }

    /// The config a reference state describes: the variant from its blocks, widths from the weights,
    /// the front end from its buffers. `decisionLevelMax` cannot be seen in the weights (the same keys
    /// as Cnn14): the caller says it (the file name, `Cnn14_DecisionLevelMax_mAP=0.385.pth`).
    public static func config(of state: [String: Tensor], file: URL, decisionLevelMax: Bool, frames: Int? = nil) throws -> PANNsConfig {
        let blocks = (1...).prefix { state["conv_block\($0).conv1.weight"] != nil }.count
        let double = state["conv_block1.conv2.weight"] != nil
        let variant: PANNsConfig.Variant
        switch (blocks, double) {
        case (6, true): variant = .cnn14
        case (4, true): variant = .cnn10
        case (4, false): variant = .cnn6
        default: throw ModelError("\(file.path): \(blocks) conv blocks\(double ? "" : " of one conv") is not Cnn6, Cnn10 or Cnn14")
        }
        guard let fc1 = state["fc1.weight"], fc1.rank == 2, let head = state["fc_audioset.weight"] ?? state["fc_transfer.weight"], head.rank == 2 else {
            throw ModelError("\(file.path): no fc1 and fc_audioset (or fc_transfer) weights")
        }
        let frontEnd = try self.frontEnd(of: state, file: file)
        var c = PANNsConfig(variant, classes: head.shape[0], frames: frames ?? (1 + 10 * frontEnd.sampleRate / frontEnd.hop), frontEnd: frontEnd)
        c.channels = (1...blocks).map { state["conv_block\($0).conv1.weight"]!.shape[0] }
        c.embeddingWidth = fc1.shape[0]
        c.decisionLevelMax = decisionLevelMax
        c.transferHead = state["fc_audioset.weight"] == nil
        try c.validate()
        return c
    }

    /// The released front end the buffers match (32, 16 or 8 kHz): the window from the STFT kernels,
    /// then the mel matrix compared entry by entry with librosa's for that rate (a 16 kHz model has a
    /// 512-point STFT, a 32 kHz one 1024). Without buffers, the 32 kHz front end of the main releases.
    public static func frontEnd(of state: [String: Tensor], file: URL) throws -> LogMelConfig {
        let stft = state["spectrogram_extractor.stft.conv_real.weight"], mel = state["logmel_extractor.melW"]
        guard stft != nil || mel != nil else { return .panns }
        let nFFT = stft.map { $0.shape.last! } ?? 2 * (mel!.shape[0] - 1)
        let candidates = PANNsConfig.frontEnds.filter { c in c.nFFT == nFFT && (mel.map { $0.shape == [c.nFFT / 2 + 1, c.nMels] } ?? true) }
        guard let melW = mel else {
            guard let c = candidates.first else { throw ModelError("\(file.path): a \(nFFT)-point STFT matches no released PANNs front end (1024 at 32 kHz, 512 at 16 kHz, 256 at 8 kHz)") }
            return c
        }
        for c in candidates {
            let bank = c.filterbank, nFreq = c.nFFT / 2 + 1   // [mels, nFreq]; melW is [nFreq, mels]
            var worst: Float = 0
            for m in 0..<c.nMels { for k in 0..<nFreq { worst = max(worst, abs(bank[m * nFreq + k] - melW.data[k * c.nMels + m])) } }
            if worst < 1e-4 { return c }
        }
        throw ModelError("\(file.path): its mel matrix \(melW.shape) matches none of the released PANNs front ends "
                         + "(\(PANNsConfig.frontEnds.map { "\($0.sampleRate / 1000) kHz, \($0.nFFT)-point STFT, \($0.fMin)-\($0.fMax) Hz" }.joined(separator: "; ")))")
    }

    /// Moves a reference state into `model`, emptying `state` as it goes: blocks renamed, front-end
    /// buffers dropped (`frontEnd(of:)` has read them), every other key and shape checked by the load.
    public static func load(consuming state: inout [String: Tensor], into model: PANNs, file: URL) throws {
        let expected = try frontEnd(of: state, file: file)
        guard state["logmel_extractor.melW"] == nil || expected == model.config.frontEnd else {
            throw ModelError("\(file.path): trained on \(expected.sampleRate / 1000) kHz audio (\(expected.nFFT)-point STFT), "
                             + "the model takes \(model.config.frontEnd.sampleRate / 1000) kHz (\(model.config.frontEnd.nFFT)-point)")
        }
        var mapped: [String: Tensor] = [:]
        for (key, t) in state where !frontEndPrefixes.contains(where: key.hasPrefix) {
            mapped[renamed(key)] = t
        }
        state.removeAll()
        do { try model.load(consuming: &mapped) } catch { throw ModelError("\(file.path): \(error)") }
    }

    /// `conv_block3.bn1.weight` → `blocks.2.bn1.weight`; other keys unchanged.
    static func renamed(_ key: String) -> String {
        guard key.hasPrefix("conv_block"), let dot = key.firstIndex(of: "."),
              let k = Int(key[key.index(key.startIndex, offsetBy: 10)..<dot]) else { return key }
        return "blocks.\(k - 1)" + key[dot...]
    }
}
