import Foundation
import XCTest
import Audio
import NN

/// The command line with a released CLAP (the tiny Hugging Face fixture): fine-tuning its audio tower,
/// classifying with the run, training the run further, and embedding and probing with the CLAP itself.
final class CLAPFineTuneCommandTests: XCTestCase {
    func testFineTuneClassifyAndEmbedWithACLAP() throws {
        let clap = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("CLAPTests/Fixtures/clap_tiny").path
        let dir = try temporaryFolder("clap-ft")
        // Two classes of tones at 48 kHz (CLAP's rate) and 16 kHz (resampled), 8 clips each.
        for (label, hz) in [("low_tone", 300.0), ("high_tone", 2500.0)] {
            let folder = dir.appendingPathComponent("data/\(label)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for i in 0..<8 {
                let rate = i % 2 == 0 ? 48000 : 16000
                let f = hz * (0.9 + 0.03 * Double(i))
                let wave = (0..<(rate * (1 + i % 3))).map { Float(0.3 * sin(2 * Double.pi * f * Double($0) / Double(rate))) }
                try AudioFile.writeWAV(wave, sampleRate: rate, to: folder.appendingPathComponent("\(i).wav"))
            }
        }
        let data = dir.appendingPathComponent("data").path, run = dir.appendingPathComponent("run").path
        let ft = try runEarshot(["finetune", "--data", data, "--init-from", clap, "--epochs", "2", "--out", run, "--batch-size", "4"])
        XCTAssertEqual(ft.status, 0, ft.output)
        XCTAssertTrue(ft.output.contains("CLAP audio tower (HTSAT)"), ft.output)
        XCTAssertTrue(ft.output.contains("test accuracy"), ft.output)
        // The run reads CLAP's raw log-mel, as the released tower was trained on: no dataset normalisation.
        let recorded = try XCTUnwrap(try FeaturePipeline.recorded(in: SafeTensors.read(URL(fileURLWithPath: run + "/best.safetensors")).metadata, file: run))
        XCTAssertNil(recorded.mean)
        XCTAssertNil(recorded.std)
        XCTAssertEqual(recorded.repeatPad, true)
        let one = dir.appendingPathComponent("data/low_tone/0.wav").path
        let classified = try runEarshot(["classify", one, "--model", run])
        XCTAssertEqual(classified.status, 0, classified.output)
        XCTAssertTrue(classified.output.contains("low") && classified.output.contains("high"), classified.output)
        // The standard input (`-`) reads a piped clip to its end: the file's scores, from the run and zero-shot.
        let piped = try runEarshot(["classify", "-", "--model", run], input: try Data(contentsOf: URL(fileURLWithPath: one)))
        XCTAssertEqual(piped.status, 0, piped.output)
        XCTAssertEqual(piped.output.replacingOccurrences(of: "/dev/stdin", with: one), classified.output)
        let zeroShot = try runEarshot(["zeroshot", one, "--model", clap, "--labels", "low,high"])
        let zeroShotPiped = try runEarshot(["zeroshot", "-", "--model", clap, "--labels", "low,high"], input: try Data(contentsOf: URL(fileURLWithPath: one)))
        XCTAssertEqual(zeroShotPiped.status, 0, zeroShotPiped.output)
        XCTAssertEqual(zeroShotPiped.output.replacingOccurrences(of: "/dev/stdin", with: one), zeroShot.output)
        // Zero-shot evaluation of the labelled folder: its class names as captions (underscores as spaces),
        // the accuracy of the per-clip zero-shot predictions.
        let evaluated = try runEarshot(["evaluate", "--task", "zeroshot", "--model", clap, "--data", data, "--json"])
        XCTAssertEqual(evaluated.status, 0, evaluated.output)
        let evalLines = try evaluated.output.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let summary = try XCTUnwrap(evalLines.last?["summary"] as? [String: Any])
        XCTAssertEqual(summary["captions"] as? [[String]], [["This is a sound of high tone.", "This is a sound of low tone."]])
        XCTAssertEqual(summary["clips"] as? Int, 16)
        let each = try runEarshot(["zeroshot", data, "--model", clap, "--labels", "high tone,low tone", "--json", "--top", "1"])
        XCTAssertEqual(each.status, 0, each.output)
        let rows = try each.output.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            .filter { $0["file"] != nil }
        XCTAssertEqual(rows.count, 16)
        let right = rows.filter { row in
            let truth = URL(fileURLWithPath: row["file"] as! String).deletingLastPathComponent().lastPathComponent.replacingOccurrences(of: "_", with: " ")
            return (row["labels"] as! [String]).first == truth
        }.count
        XCTAssertEqual(try XCTUnwrap(summary["accuracy"] as? Double), Double(right) / 16, accuracy: 1e-9)
        // The run is a start too (its tower and projection; a new head).
        let further = try runEarshot(["finetune", "--data", data, "--init-from", run, "--epochs", "1", "--out", dir.appendingPathComponent("run2").path])
        XCTAssertEqual(further.status, 0, further.output)
        XCTAssertTrue(further.output.contains("CLAP audio classifier"), further.output)
        // Parameter-efficient: a delta of the biases and the head, classified with the CLAP as its base
        // (the folder, or its weights file); LoRA on the Swin blocks likewise; the methods that need
        // AST-style attention layers or prompt slots are refused by name.
        let delta = dir.appendingPathComponent("bitfit").path
        let bitfit = try runEarshot(["finetune", "--data", data, "--init-from", clap, "--epochs", "1", "--out", delta, "--peft", "bitfit"])
        XCTAssertEqual(bitfit.status, 0, bitfit.output)
        for base in [clap, clap + "/model.safetensors"] {
            let withBase = try runEarshot(["classify", one, "--model", delta, "--base", base])
            XCTAssertEqual(withBase.status, 0, withBase.output)
        }
        let loraRun = dir.appendingPathComponent("lora").path
        let lora = try runEarshot(["finetune", "--data", data, "--init-from", clap, "--epochs", "1", "--out", loraRun, "--peft", "lora", "--reduction-rate", "8"])
        XCTAssertEqual(lora.status, 0, lora.output)
        let withLoRA = try runEarshot(["classify", one, "--model", loraRun, "--base", clap])
        XCTAssertEqual(withLoRA.status, 0, withLoRA.output)
        // Houlsby adapters on the Swin blocks: the delta on its base classifies as the run's own checkpoint.
        let adapterRun = dir.appendingPathComponent("adapter").path
        let adapter = try runEarshot(["finetune", "--data", data, "--init-from", clap, "--epochs", "1", "--out", adapterRun, "--peft", "adapter",
                                      "--adapter", "houlsby", "--adapter-init", "standard", "--reduction-rate", "8"])
        XCTAssertEqual(adapter.status, 0, adapter.output)
        XCTAssertTrue(adapter.output.contains("parameters trainable"), adapter.output)
        let fromDelta = try runEarshot(["classify", one, "--model", adapterRun + "/delta.safetensors", "--base", clap, "--json"])
        let fromRun = try runEarshot(["classify", one, "--model", adapterRun, "--json"])
        XCTAssertEqual(fromDelta.status, 0, fromDelta.output)
        XCTAssertEqual(fromDelta.output.split(separator: "\n").first, fromRun.output.split(separator: "\n").first)
        let prefix = try runEarshot(["finetune", "--data", data, "--init-from", clap, "--epochs", "1", "--out", dir.appendingPathComponent("prefix").path, "--peft", "prefix"])
        XCTAssertNotEqual(prefix.status, 0)
        XCTAssertTrue(prefix.output.contains("use full, linear, bitfit, adapter, conformer, moa or lora"), prefix.output)
        // The CLAP as an encoder: its projected audio embeddings (16 wide in the fixture).
        let out = dir.appendingPathComponent("e.safetensors").path
        let embedded = try runEarshot(["embed", data, "--model", clap, "--out", out])
        XCTAssertEqual(embedded.status, 0, embedded.output)
        XCTAssertTrue(embedded.output.contains("16 embeddings of dimension 16"), embedded.output)
        let probed = try runEarshot(["probe", "--model", clap, "--data", data, "--json"])
        XCTAssertEqual(probed.status, 0, probed.output)
    }
}
