import Foundation
import XCTest
import Engine
@testable import NN

final class CheckpointTests: XCTestCase {
    func testRoundTripWithMetadata() throws {
        let model = Sequential([Linear(4, 3), BatchNorm(3)])
        _ = try model(Tensor.randn([5, 4]))
        let url = tempDir().appendingPathComponent("model.safetensors")
        try model.save(to: url, metadata: ["config": "{\"dim\":4}", "step": "12"])
        let other = Sequential([Linear(4, 3), BatchNorm(3)])
        let meta = try other.load(from: url)
        XCTAssertEqual(meta["step"], "12")
        for (k, t) in model.stateDict() { XCTAssertEqual(t.toArray(), other.stateDict()[k]!.toArray(), k) }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path)
        XCTAssertEqual(leftovers, ["model.safetensors"], "no temporary files left behind")
    }

    func testReadsHalfAndIntegerDTypesFromPyTorch() throws {
        // A hand-built file: F16 [1, -2, 0.5] and I64 [7].
        var header = "{\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},\"n\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[6,14]}}"
        while header.utf8.count % 8 != 0 { header += " " }
        var data = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(header.data(using: .utf8)!)
        for h: UInt16 in [0x3C00, 0xC000, 0x3800] { withUnsafeBytes(of: h.littleEndian) { data.append(contentsOf: $0) } }
        withUnsafeBytes(of: Int64(7).littleEndian) { data.append(contentsOf: $0) }
        let file = try SafeTensors.parse(data, name: "hand.safetensors")
        XCTAssertEqual(file.tensors["a"]?.toArray(), [1, -2, 0.5])
        XCTAssertEqual(file.tensors["n"]?.toArray(), [7])
    }

    func testCorruptAndTruncatedFilesAreNamedErrors() throws {
        let dir = tempDir()
        let good = dir.appendingPathComponent("good.safetensors")
        try Sequential([Linear(8, 8)]).save(to: good)
        let bytes = try Data(contentsOf: good)

        func expectError(_ data: Data, _ fragment: String, line: UInt = #line) throws {
            let url = dir.appendingPathComponent("bad.safetensors")
            try data.write(to: url)
            XCTAssertThrowsError(try SafeTensors.read(url), line: line) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains("bad.safetensors"), "error names the file: \(text)", line: line)
                XCTAssertTrue(text.contains(fragment), "expected '\(fragment)' in: \(text)", line: line)
            }
        }
        try expectError(Data(), "too short")
        try expectError(bytes.prefix(bytes.count - 10), "truncated")
        try expectError(bytes.prefix(20), "truncated")
        var garbled = bytes
        garbled[9] = 0x00; garbled[10] = 0x7B
        try expectError(garbled, "JSON")
        XCTAssertThrowsError(try SafeTensors.read(dir.appendingPathComponent("missing.safetensors"))) {
            XCTAssertTrue("\($0)".contains("missing.safetensors"))
        }
    }

    func testMismatchedCheckpointsNameTheKeys() throws {
        let url = tempDir().appendingPathComponent("m.safetensors")
        try Sequential([Linear(4, 3)]).save(to: url)
        XCTAssertThrowsError(try Sequential([Linear(4, 3), Linear(3, 2)]).load(from: url)) { error in
            XCTAssertTrue("\(error)".contains("missing keys: 1.weight, 1.bias"), "\(error)")
        }
        XCTAssertThrowsError(try Sequential([Linear(4, 5)]).load(from: url)) { error in
            XCTAssertTrue("\(error)".contains("'0.weight' has shape [3, 4]"), "\(error)")
        }
        XCTAssertThrowsError(try Sequential([Identity(), Linear(4, 3)]).load(from: url)) { error in
            XCTAssertTrue("\(error)".contains("unexpected keys: 0.bias, 0.weight"), "\(error)")
        }
        let (missing, unexpected) = try Sequential([Linear(4, 3), Linear(3, 2)]).load(stateDict: try SafeTensors.read(url).tensors, strict: false)
        XCTAssertEqual(missing, ["1.weight", "1.bias"])
        XCTAssertEqual(unexpected, [])
    }
}
