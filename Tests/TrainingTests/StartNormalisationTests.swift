import Foundation
import XCTest
import Audio
import NN
@testable import Models
@testable import Training

/// `finetune --init-from` without `--mean/--std` feeds the encoder the features its start was trained
/// on: a released PANNs its raw dB, an Earshot classifier its own statistics; given ones win, and a
/// start that records nothing (or no start) keeps AudioSet's.
final class StartNormalisationTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    func recorded(_ run: RunDirectory) throws -> FeaturePipeline {
        try XCTUnwrap(try FeaturePipeline.recorded(in: SafeTensors.read(run.best).metadata, file: run.best.path))
    }

    /// A released PANNs read unnormalised dB: the run does too, so a frozen trunk is a fixed feature
    /// extractor (eval mode, its batch norms as released) — and a resume keeps both.
    func testAReleasedPANNsIsFedRawDecibels() throws {
        let dir = try temporaryFolder("start-norm-panns")
        let data = try toneDataset(in: dir)
        let release = fixtures.appendingPathComponent("ModelsTests/Fixtures/panns_cnn14_8k.pth")
        var c = FineTuneConfig()
        (c.initFrom, c.inputTdim, c.epochs, c.batchSize, c.lr, c.freezeEncoder, c.normalisationFromStart) = (release.path, 100, 1, 4, 1e-3, true, true)
        let run = try RunDirectory(dir.appendingPathComponent("run"))
        var lines: [String] = []
        _ = try fineTune(c, data: data, run: run) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.contains("left unnormalised") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains("runs in eval mode") }, "\(lines)")
        XCTAssertNil(try recorded(run).mean)
        XCTAssertNil(try recorded(run).std)
        let start = try PANNsCheckpoint.unwrapped(TorchCheckpoint.read(release))
        XCTAssertEqual(try SafeTensors.read(run.best).tensors["bn0.running_mean"]?.toArray(), start["bn0.running_mean"]?.toArray())
        c.epochs = 2
        lines = []
        _ = try fineTune(c, data: data, run: run, resume: true) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.contains("runs in eval mode") }, "\(lines)")
        XCTAssertNil(try recorded(run).mean)
    }

    /// An Earshot classifier trained on its data's own statistics passes them on; `--mean/--std` given
    /// (no `normalisationFromStart`) win; a start is what decides, not the flag alone.
    func testAnEarshotStartPassesOnItsStatistics() throws {
        let dir = try temporaryFolder("start-norm-ast")
        let data = try toneDataset(in: dir)
        var first = FineTuneConfig()
        (first.model, first.depth, first.inputTdim, first.epochs, first.batchSize, first.mean, first.std) = ("ast-tiny", 1, 100, 1, 4, -6.5, 3.25)
        let base = try RunDirectory(dir.appendingPathComponent("base"))
        _ = try fineTune(first, data: data, run: base) { _ in }
        XCTAssertEqual(try recorded(base).mean, -6.5)

        var fromStart = FineTuneConfig()
        (fromStart.initFrom, fromStart.inputTdim, fromStart.epochs, fromStart.batchSize, fromStart.normalisationFromStart) = (base.url.path, 100, 1, 4, true)
        let inherited = try RunDirectory(dir.appendingPathComponent("inherited"))
        _ = try fineTune(fromStart, data: data, run: inherited) { _ in }
        XCTAssertEqual(try recorded(inherited).mean, -6.5)
        XCTAssertEqual(try recorded(inherited).std, 3.25)

        var given = fromStart
        (given.normalisationFromStart, given.mean, given.std) = (nil, -2, 2)
        let own = try RunDirectory(dir.appendingPathComponent("given"))
        _ = try fineTune(given, data: data, run: own) { _ in }
        XCTAssertEqual(try recorded(own).mean, -2)
        XCTAssertEqual(try recorded(own).std, 2)
    }

    /// The command line asks for the start's features only when neither statistic is given.
    func testTheCommandLineTakesTheStartsFeaturesUnlessGiven() throws {
        let dir = try temporaryFolder("start-norm-cli")
        let folder = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let data = try toneDataset(in: folder)
        let manifest = dir.appendingPathComponent("manifest.csv")
        try ("path,label,split\n" + data.records.map { "\($0.path),\($0.labels[0]),\($0.split!)" }.joined(separator: "\n"))
            .write(to: manifest, atomically: true, encoding: .utf8)
        let release = fixtures.appendingPathComponent("ModelsTests/Fixtures/panns_cnn14_8k.pth").path
        let common = ["finetune", "--data", manifest.path, "--init-from", release, "--target-length", "100", "--epochs", "1", "--batch-size", "4"]
        let plain = try runEarshot(common + ["--out", dir.appendingPathComponent("plain").path])
        XCTAssertEqual(plain.status, 0, plain.output)
        XCTAssertNil(try recorded(RunDirectory(dir.appendingPathComponent("plain"))).mean)
        let given = try runEarshot(common + ["--out", dir.appendingPathComponent("given").path, "--mean=-20", "--std", "10"])
        XCTAssertEqual(given.status, 0, given.output)
        XCTAssertEqual(try recorded(RunDirectory(dir.appendingPathComponent("given"))).mean, -20)
    }
}
