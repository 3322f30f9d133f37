import Audio
import Engine
import Foundation
import Models
import NN
@testable import Training
import XCTest

/// Continued pretraining (`pretrain --init-from`): a run that starts from another run's weights, keeps
/// its architecture, adds or drops the optional clip head, and refuses starts that cannot fit.
final class PretrainStartTests: XCTestCase {
    /// 16 short tones, alternately high and low (only the audio matters: pretraining uses no labels).
    func makeData() throws -> (URL, Dataset) {
        let dir = try temporaryFolder("start")
        var g = RandomGenerator(seed: 5)
        var records: [ClipRecord] = []
        for i in 0..<16 {
            let f = (i % 2 == 0 ? 2500.0 : 250.0) * (1 + 0.1 * Double(g.nextUniform()))
            let wave = (0..<8_000).map { n in Float(0.3 * sin(2 * Double.pi * f * Double(n) / 16000)) + 0.01 * g.nextNormal() }
            let url = dir.appendingPathComponent("clip\(i).wav")
            try AudioFile.writeWAV(wave, sampleRate: 16000, to: url)
            records.append(ClipRecord(path: url.path, labels: [], split: i < 12 ? "train" : "test"))
        }
        return (dir, Dataset(records: records, layout: "test"))
    }

    func smallConfig() -> PretrainConfig {
        var c = PretrainConfig()
        (c.model, c.depth, c.inputTdim, c.cropFrames, c.maskCount, c.epochs, c.batchSize, c.lr, c.warmupSteps, c.mean, c.std) =
            ("ssast-tiny-frame", 1, 64, 32, 4, 1, 4, 5e-4, 2, -6.8, 5.6)
        return c
    }

    func testContinuedRunStartsFromTheStartsWeightsAndKeepsItsArchitecture() throws {
        let (dir, data) = try makeData()
        let start = try RunDirectory(dir.appendingPathComponent("start"))
        _ = try pretrain(smallConfig(), data: data, run: start) { _ in }
        let startWeights = try SafeTensors.read(start.best).tensors

        // Asks for another model and depth: the start's own win. A learning rate near zero leaves the
        // weights where the start put them, so a copy shows as equality and a fresh init would not.
        var c = smallConfig()
        (c.model, c.depth, c.lr, c.clipContrastWeight, c.initFrom) = ("ssast-tiny-patch", 3, 1e-12, 1, start.url.path)
        let cont = try RunDirectory(dir.appendingPathComponent("cont"))
        var lines: [String] = []
        _ = try pretrain(c, data: data, run: cont) { lines.append($0) }
        let config = try cont.readConfig(PretrainConfig.self)
        XCTAssertEqual(config.model, "ssast-tiny-frame")
        XCTAssertEqual(config.depth, 1)
        XCTAssertEqual(config.initFrom, start.url.path)
        let after = try SafeTensors.read(cont.best).tensors
        for key in ["v.blocks.0.attn.qkv.weight", "v.pos_embed", "cpredlayer.0.weight", "mask_embed"] {
            let a = try XCTUnwrap(startWeights[key]).toArray(), b = try XCTUnwrap(after[key]).toArray()
            XCTAssertEqual(a.count, b.count, key)
            XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max() ?? 1, 1e-6, "\(key) is the start's")
        }
        XCTAssertNotNil(after["clip_projection.0.weight"], "the clip head starts afresh")
        XCTAssertTrue(lines.contains { $0.contains("clip_projection") && $0.contains("afresh") }, lines.joined(separator: "\n"))

        // The same with a fresh initialisation differs from the start: the comparison above can fail.
        var scratch = smallConfig()
        (scratch.lr, scratch.seed) = (1e-12, 1)
        let fresh = try RunDirectory(dir.appendingPathComponent("fresh"))
        _ = try pretrain(scratch, data: data, run: fresh) { _ in }
        let f = try XCTUnwrap(SafeTensors.read(fresh.best).tensors["v.blocks.0.attn.qkv.weight"]).toArray()
        let s = try XCTUnwrap(startWeights["v.blocks.0.attn.qkv.weight"]).toArray()
        XCTAssertGreaterThan(zip(f, s).map { abs($0 - $1) }.max() ?? 0, 1e-3)

        // A run with the clip head continued without the term drops the head; resuming ignores the start.
        var plain = smallConfig()
        plain.initFrom = cont.url.path
        let dropped = try RunDirectory(dir.appendingPathComponent("dropped"))
        lines = []
        _ = try pretrain(plain, data: data, run: dropped) { lines.append($0) }
        XCTAssertNil(try SafeTensors.read(dropped.best).tensors["clip_projection.0.weight"])
        XCTAssertTrue(lines.contains { $0.contains("left out") }, lines.joined(separator: "\n"))
        plain.epochs = 2
        XCTAssertEqual(try pretrain(plain, data: data, run: dropped, resume: true) { _ in }.epochs, 2)
    }

    func testStartsThatCannotFitAreRefusedByName() throws {
        let (dir, data) = try makeData()
        let start = try RunDirectory(dir.appendingPathComponent("start"))
        _ = try pretrain(smallConfig(), data: data, run: start) { _ in }

        var other = smallConfig()
        (other.cropFrames, other.initFrom) = (48, start.url.path)
        XCTAssertThrowsError(try pretrain(other, data: data, run: try RunDirectory(dir.appendingPathComponent("a"))) { _ in }) {
            XCTAssertTrue("\($0)".contains("32-frame windows") && "\($0)".contains("--crop-frames 32"), "\($0)")
        }

        let classifier = dir.appendingPathComponent("classifier.safetensors")
        try SafeTensors.write(["v.cls_token": Tensor.zeros([1, 1, 192])], to: classifier, metadata: ["architecture": "ast"])
        other.initFrom = classifier.path
        XCTAssertThrowsError(try pretrain(other, data: data, run: try RunDirectory(dir.appendingPathComponent("b"))) { _ in }) {
            XCTAssertTrue("\($0)".contains("not an Earshot pretraining checkpoint") && "\($0)".contains(classifier.path), "\($0)")
        }

        other.initFrom = dir.appendingPathComponent("nowhere.safetensors").path
        XCTAssertThrowsError(try pretrain(other, data: data, run: try RunDirectory(dir.appendingPathComponent("c"))) { _ in }) {
            XCTAssertTrue("\($0)".contains("nowhere.safetensors"), "\($0)")
        }

        // A start whose weights are missing a key the model needs (a damaged or foreign file).
        var weights = try SafeTensors.read(start.best)
        weights.tensors["v.norm.weight"] = nil
        let damaged = dir.appendingPathComponent("damaged.safetensors")
        try SafeTensors.write(weights.tensors, to: damaged, metadata: weights.metadata)
        other = smallConfig()
        other.initFrom = damaged.path
        XCTAssertThrowsError(try pretrain(other, data: data, run: try RunDirectory(dir.appendingPathComponent("d"))) { _ in }) {
            XCTAssertTrue("\($0)".contains("missing v.norm.weight"), "\($0)")
        }
    }
}
