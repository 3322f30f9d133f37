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

    func testFloat16FilesRoundWeightsToHalfAndKeepIntegersAndMetadata() throws {
        let model = Sequential([Linear(64, 48), BatchNorm(48)])
        _ = try model(Tensor.randn([4, 64]))
        let state = model.stateDict()
        let ints = Set(state.keys.filter { $0.hasSuffix("num_batches_tracked") })
        XCTAssertFalse(ints.isEmpty)
        let url = tempDir().appendingPathComponent("half.safetensors")
        try SafeTensors.write(state, to: url, metadata: ["config": "{}"], integerKeys: ints, float16: true)
        let full = try SafeTensors.serialize(state, integerKeys: ints)
        let size = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as! Int
        XCTAssertLessThan(Double(size), 0.75 * Double(full.count), "float16 should roughly halve the data")
        let file = try SafeTensors.read(url)
        XCTAssertEqual(file.metadata["config"], "{}")
        for (key, t) in state {
            let back = file.tensors[key]!.toArray()
            for (a, b) in zip(t.toArray(), back) {
                if ints.contains(key) { XCTAssertEqual(a, b, key) } else {
                    // Round to nearest: within half a float16 step (2^-11 relative), exactly Float16(a).
                    XCTAssertEqual(b, Float(Float16(a)), key)
                    XCTAssertLessThanOrEqual(abs(a - b), abs(a) * 0x1p-11 + 0x1p-25, key)
                }
            }
        }
        let other = Sequential([Linear(64, 48), BatchNorm(48)])
        try other.load(from: url)   // loads as any checkpoint does
        let tooLarge = ["w": Tensor([1, 70_000])]
        XCTAssertThrowsError(try SafeTensors.serialize(tooLarge, float16: true)) { error in
            XCTAssertTrue("\(error)".contains("'w'") && "\(error)".contains("float16"), "\(error)")
        }
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

    func testConsumingLoadEmptiesTheStateOrLeavesItWhole() throws {
        let source = Sequential([Linear(4, 3), Linear(3, 2)])
        var state = Dictionary(uniqueKeysWithValues: try source.stateDict().map { ($0.key, try Tensor($0.value.toArray(), shape: $0.value.shape)) })
        let model = Sequential([Linear(4, 3), Linear(3, 2)])
        try model.load(consuming: &state)
        XCTAssertTrue(state.isEmpty, "every copied entry is handed back")
        for (k, t) in source.stateDict() { XCTAssertEqual(t.toArray(), model.stateDict()[k]!.toArray(), k) }

        // A shape mismatch in the last key: nothing is copied and nothing is taken out of `state`.
        var bad = source.stateDict()
        bad["1.bias"] = Tensor.zeros([3])
        let fresh = Sequential([Linear(4, 3), Linear(3, 2)])
        let before = fresh.stateDict().mapValues { $0.toArray() }
        XCTAssertThrowsError(try fresh.load(consuming: &bad)) { XCTAssertTrue("\($0)".contains("'1.bias' has shape [3]"), "\($0)") }
        XCTAssertEqual(bad.count, 4)
        for (k, t) in fresh.stateDict() { XCTAssertEqual(t.toArray(), before[k], k) }
    }

    func testPageBackedTensorsAreZeroAndWritable() {
        for n in [10, Storage.pageBackedMinimum, 3 * Storage.pageBackedMinimum + 5] {
            let t = Tensor.pageBacked([n])
            XCTAssertEqual(t.count, n)
            XCTAssertTrue(t.toArray().allSatisfy { $0 == 0 })
            t.data[n - 1] = 2
            XCTAssertEqual(try t.sum().item(), 2)
        }
        // Weights built for a checkpoint to fill are zeros, timm's Linear initialisation included.
        let model = Random.withoutInitialisation {
            let m = Sequential([Linear(256, 128)])
            Init.timmLinear(m)   // as AST's initialiser calls it
            return m
        }
        XCTAssertTrue(model.stateDict().values.allSatisfy { $0.toArray().allSatisfy { $0 == 0 } })
    }

    /// Loading a checkpoint into a model built for it holds the weights once, not twice: the parsed
    /// tensors are freed as they are copied, and the model's pages fill as they are written.
    func testLoadingACheckpointHoldsItOnce() throws {
        // VmHWM restarts from the current resident size after "5" is written to clear_refs (Linux 4.0+).
        func reset() -> Bool { (try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)) != nil }
        func kilobytes(_ field: String) -> Double {
            let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
            let line = text.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
            return line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        }
        let make = { Sequential((0..<12).map { _ in Linear(1024, 1024) }) }   // 48 MB of weights
        let url = tempDir().appendingPathComponent("big.safetensors")
        try make().save(to: url)
        let bytes = Double(make().parameterCount() * 4)
        // Nothing freed earlier may come back already resident (pooled buffers, malloc's free lists).
        Memory.releaseCachedBuffers()
        if let trim = dlsym(nil, "malloc_trim") {   // glibc's; not in Swift's Glibc module
            _ = unsafeBitCast(trim, to: (@convention(c) (Int) -> Int32).self)(0)
        }
        guard reset(), kilobytes("VmHWM") > 0 else { throw XCTSkip("this kernel cannot reset the peak resident size") }
        let start = kilobytes("VmRSS") * 1024
        let model = Random.withoutInitialisation { make() }
        _ = try model.load(from: url)
        let peak = kilobytes("VmHWM") * 1024 - start
        XCTAssertEqual(try model.stateDict()["11.weight"]!.abs().sum().item() > 0, true, "the weights were loaded")
        XCTAssertLessThan(peak, 1.5 * bytes, "peak \(Int(peak) >> 20) MB for \(Int(bytes) >> 20) MB of weights")
    }
}
