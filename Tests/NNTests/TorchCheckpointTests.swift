import Foundation
import XCTest
import Engine
@testable import NN

final class TorchCheckpointTests: XCTestCase {
    func testReadsARealStateDict() throws {
        let state = try TorchCheckpoint.read(fixturesDir.appendingPathComponent("torch_state.pth"))
        let expected = try SafeTensors.read(fixturesDir.appendingPathComponent("torch_state.safetensors")).tensors
        XCTAssertEqual(Set(state.keys), Set(expected.keys))
        for (k, t) in expected {
            XCTAssertEqual(state[k]?.shape, t.shape, k)
            XCTAssertEqual(state[k]?.toArray(), t.toArray(), k)   // includes fp16, int64 and a strided view
        }
        // The state dict loads straight into the matching module.
        let net = Sequential([Linear(4, 3), BatchNorm(3)])
        try net.load(stateDict: state.filter { !$0.key.hasPrefix("extra.") })
        XCTAssertEqual((net.layers[1] as! BatchNorm).numBatchesTracked.data[0], 1)
    }

    func testWrappedCheckpointsKeepTheirPrefix() throws {
        let state = try TorchCheckpoint.read(fixturesDir.appendingPathComponent("torch_wrapped.pth"))
        XCTAssertEqual(Array(state.keys), ["model.w"])
    }

    func testRefusesCodeInPickles() throws {
        XCTAssertThrowsError(try TorchCheckpoint.read(fixturesDir.appendingPathComponent("malicious.pth"))) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("malicious.pth") && text.contains("refusing global") && text.contains("system"), text)
        }
    }

    func testCorruptAndTruncatedFiles() throws {
        let dir = tempDir()
        let good = try Data(contentsOf: fixturesDir.appendingPathComponent("torch_state.pth"))
        for (name, bytes) in [("empty.pth", Data()), ("half.pth", good.prefix(good.count / 2)), ("text.pth", Data("hello".utf8))] {
            let url = dir.appendingPathComponent(name)
            try bytes.write(to: url)
            XCTAssertThrowsError(try TorchCheckpoint.read(url)) { XCTAssertTrue("\($0)".contains(name), "\($0)") }
        }
    }

    /// A damaged directory whose lengths point past the end of the file (a fuzzed Cnn14 release crashed
    /// the reader so): the last entry's extra-field length set to 65535, the directory's offset moved
    /// out of the file. Each is an error naming the file.
    func testDirectoryFieldsPointingOutsideTheFileAreErrors() throws {
        let dir = tempDir()
        let good = try Data(contentsOf: fixturesDir.appendingPathComponent("torch_state.pth"))
        let bytes = [UInt8](good)
        func find(_ signature: [UInt8]) -> [Int] {
            (0...(bytes.count - 4)).filter { Array(bytes[$0..<($0 + 4)]) == signature }
        }
        let lastEntry = try XCTUnwrap(find([0x50, 0x4B, 0x01, 0x02]).last), eocd = try XCTUnwrap(find([0x50, 0x4B, 0x05, 0x06]).last)
        var longExtra = bytes
        (longExtra[lastEntry + 30], longExtra[lastEntry + 31]) = (0xFF, 0xFF)
        var farDirectory = bytes
        for k in 0..<4 { farDirectory[eocd + 16 + k] = 0xF0 }
        for (name, damaged) in [("long-extra.pth", longExtra), ("far-directory.pth", farDirectory)] {
            let url = dir.appendingPathComponent(name)
            try Data(damaged).write(to: url)
            XCTAssertThrowsError(try TorchCheckpoint.read(url)) { XCTAssertTrue("\($0)".contains(name) && "\($0)".contains("corrupt zip"), "\($0)") }
        }
    }
}
