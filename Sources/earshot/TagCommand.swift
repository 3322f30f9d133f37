import ArgumentParser
import Audio
import Foundation
import Inference
import Models

/// `earshot tag`: multi-label tags of whole clips, or with `--frames` the sound events in recordings of
/// any length (onset and offset times, from a frame-scoring model such as PANNs' Cnn14_DecisionLevelMax).
struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tags of audio clips above a threshold, or with --frames their sound events with onset and offset times.",
        discussion: """
        Without --frames every clip is scored as a whole (\(wholeClipHelp.prefix(1).lowercased() + wholeClipHelp.dropFirst())) and \
        the classes at or above --threshold are printed. With --frames the model must score frames (a decision-level \
        max PANNs: cnn14-dlm, Cnn14_DecisionLevelMax_*.pth): each recording is read and scored in chunks, so an hour \
        of audio needs the memory of one window, and every run of frames at or above --threshold that lasts at least \
        --min-duration seconds is an event. `-` reads the standard input as a live stream (WAV or another format \
        libsndfile reads from a pipe: `arecord -f S16_LE -r 32000 -c 1 | earshot tag --frames - --model ...`) and prints \
        each event as soon as it ends (JSON: one line per event).
        """)
    @Argument(help: "Audio files, folders or manifests.") var files: [String]
    @Option(help: "A tagger: a run folder or checkpoint, a Hugging Face folder, or an original .pth (PANNs, AST).") var model: String
    @OptionGroup(title: "Released checkpoints") var released: ReleasedCheckpointArguments
    @Flag(help: "Sound events with onset and offset times instead of clip tags.") var frames = false
    @Option(help: "Probability at or above which a class is tagged (or a frame is part of an event).") var threshold: Float = 0.5
    @Option(name: .customLong("min-duration"), help: "--frames: events shorter than this many seconds are dropped.") var minDuration = 0.1
    @Flag(help: "One JSON object per clip, then a summary line.") var json = false
    @Option(help: "--frames: a CSV of the true events (label,onset,offset; `earshot dataset events`) to score the detections against (one recording).")
    var truth: String?

    func validate() throws {
        guard (0...1).contains(threshold) else { throw ValidationError("--threshold \(threshold) must be between 0 and 1") }
        guard minDuration >= 0 else { throw ValidationError("--min-duration \(minDuration) must not be negative") }
        if truth != nil && !frames { throw ValidationError("--truth scores sound events: add --frames") }
        if files.filter({ $0 == "-" }).count > 1 { throw ValidationError("- (the standard input) can be read once") }
    }

    func run() throws {
        let clf = try Classifier.load(ShippedModels.resolve(model), released: released.options, base: released.baseURL)
        // --frames keeps `-` for the live stream; clip tags read it to its end as any file.
        let paths = try frames ? files.flatMap { $0 == "-" ? ["-"] : try audioFiles([$0]) } : audioFiles(files)
        var skipped: [(path: String, reason: String)] = [], done = 0
        if frames {
            for path in paths {
                do {
                    let live = path == "-"
                    if live && !json { print("-: (standard input; each event as it ends)") }
                    let events = try clf.soundEvents(in: live ? AudioStream.standardInput : URL(fileURLWithPath: path),
                                                     threshold: threshold, minDuration: minDuration) { e in
                        guard live else { return }
                        if json {
                            try printJSONLine(["file": path, "label": e.label, "onset": e.onset, "offset": e.offset, "peak": Double(e.peak)])
                        } else {
                            print(String(format: "  %8.2f - %8.2f s  %@ (peak %.3f)", e.onset, e.offset, e.label, e.peak))
                        }
                    }
                    done += 1
                    if live {
                        if events.isEmpty && !json { print("  no events") }
                    } else if json {
                        try printJSONLine(["file": path, "events": events.map { ["label": $0.label, "onset": $0.onset, "offset": $0.offset, "peak": Double($0.peak)] }])
                    } else {
                        print(path + ":" + (events.isEmpty ? " no events" : ""))
                        for e in events { print(String(format: "  %8.2f - %8.2f s  %@ (peak %.3f)", e.onset, e.offset, e.label, e.peak)) }
                    }
                    if let truth { try report(EventMatchReport(truth: try readTrueEvents(truth), detected: events)) }
                } catch let error as AudioError {
                    // One unreadable recording does not stop the rest; a model that cannot score frames does.
                    if error.message.contains("frame-wise") || error.message.contains("streams log-mel") { throw error }
                    skipped.append((path, error.message))
                }
            }
        } else {
            let report = try clf.classify(paths, progress: progressLine) { file, scores in
                done += 1
                let tags = scores.ranked.filter { $0.score >= threshold }
                if json {
                    try printJSONLine(["file": file, "labels": tags.map(\.label), "scores": tags.map { Double($0.score) }])
                } else {
                    print(file + ": " + (tags.isEmpty ? "(none at or above \(threshold))" : tags.map { String(format: "%@ %.3f", $0.label, $0.score) }.joined(separator: ", ")))
                }
            }
            skipped = report.skipped.map { ($0.path, $0.reason) }
        }
        if json {
            try printJSONLine(["summary": ["clips": done, "skipped": skipped.map { ["file": $0.0, "reason": $0.1] }]])
        } else {
            for (file, reason) in skipped { print("\(file): skipped (\(reason))") }
        }
        if done == 0 && !paths.isEmpty { throw AudioError(noClipReadMessage(skipped, total: paths.count)) }
    }

    /// Detections against the truth: every true event with its match (or a miss), the false alarms, and the
    /// mean absolute onset and offset errors.
    func report(_ r: EventMatchReport) throws {
        let onset = r.meanAbsoluteOnsetError, offset = r.meanAbsoluteOffsetError
        if json {
            try printJSONLine(["score": [
                "true_events": r.matches.count + r.misses.count, "detected": r.matches.count, "misses": r.misses.count,
                "false_alarms": r.falseAlarms.count, "mean_abs_onset_error_s": onset ?? Double.nan, "mean_abs_offset_error_s": offset ?? Double.nan,
                "matches": r.matches.map { ["label": $0.truth.label, "true_onset": $0.truth.onset, "true_offset": $0.truth.offset,
                                            "onset": $0.detected.onset, "offset": $0.detected.offset] },
                "missed": r.misses.map { ["label": $0.label, "onset": $0.onset, "offset": $0.offset] },
                "false_alarm_events": r.falseAlarms.map { ["label": $0.label, "onset": $0.onset, "offset": $0.offset] }]])
            return
        }
        print("against the truth:")
        for m in r.matches {
            print(String(format: "  %-16@ true %7.2f - %7.2f s, detected %7.2f - %7.2f s (onset %+.2f, offset %+.2f)", m.truth.label,
                         m.truth.onset, m.truth.offset, m.detected.onset, m.detected.offset,
                         m.detected.onset - m.truth.onset, m.detected.offset - m.truth.offset))
        }
        for t in r.misses { print(String(format: "  %-16@ true %7.2f - %7.2f s, missed", t.label, t.onset, t.offset)) }
        for d in r.falseAlarms { print(String(format: "  %-16@ false alarm %7.2f - %7.2f s", d.label, d.onset, d.offset)) }
        print(String(format: "%d of %d events detected, %d missed, %d false alarms; mean absolute onset error %@, offset error %@",
                     r.matches.count, r.matches.count + r.misses.count, r.misses.count, r.falseAlarms.count,
                     onset.map { String(format: "%.3f s", $0) } ?? "-", offset.map { String(format: "%.3f s", $0) } ?? "-"))
    }
}
