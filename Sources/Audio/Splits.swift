import Engine
import Foundation

extension Dataset {
    /// The same dataset with a seeded `fraction` of the clips for which `isCandidate` holds moved to split
    /// `name`: the validation split that chooses a checkpoint, or a test split for data that has none.
    ///
    /// Where `bySpeaker` allows it, every candidate has a speaker and the labels are not the speakers,
    /// whole speakers are held out (no voice is on both sides, so the held-out score is not flattered by
    /// voices it trained on):
    /// speakers in a seeded order until the fraction is reached, at least one, never all. Otherwise the
    /// draw is stratified per class (first label): round(fraction·n) clips of each class with n ≥ 2, at
    /// least one. Throws when nothing or everything would be held out.
    public func holdingOut(_ fraction: Double, as name: String, seed: UInt64, bySpeaker allowed: Bool = true,
                           from isCandidate: (ClipRecord) -> Bool = { _ in true }) throws -> Dataset {
        guard fraction > 0 && fraction < 1 else { throw DatasetError("held-out fraction \(fraction) for split '\(name)' must be between 0 and 1") }
        let candidates = records.indices.filter { isCandidate(records[$0]) }
        var generator = RandomGenerator(seed: seed &+ 0x5EED)
        var chosen = Set<Int>()
        let bySpeaker = allowed && !candidates.isEmpty && candidates.allSatisfy { i in
            records[i].speaker.map { !$0.isEmpty && records[i].labels != [$0] } ?? false
        }
        if bySpeaker {
            var speakers = Array(Set(candidates.map { records[$0].speaker! })).sorted()
            generator.shuffle(&speakers)
            let target = Int((fraction * Double(candidates.count)).rounded())
            for speaker in speakers.dropLast() where chosen.count < max(target, 1) {
                for i in candidates where records[i].speaker == speaker { chosen.insert(i) }
            }
        } else {
            var byClass: [String: [Int]] = [:]
            for i in candidates { byClass[records[i].labels.first ?? "", default: []].append(i) }
            for label in byClass.keys.sorted() {
                var members = byClass[label]!
                guard members.count >= 2 else { continue }
                generator.shuffle(&members)
                let take = min(max(Int((fraction * Double(members.count)).rounded()), 1), members.count - 1)
                chosen.formUnion(members.prefix(take))
            }
        }
        guard !chosen.isEmpty, chosen.count < candidates.count else {
            throw DatasetError("cannot hold out \(Int(fraction * 100))% of \(candidates.count) clips as split '\(name)' "
                               + "(too few clips\(bySpeaker ? " or speakers" : " per class"))")
        }
        var out = self
        for i in chosen { out.records[i].split = name }
        out.layout = layout + ", \(chosen.count) clips held out as \(name)"
        return out
    }
}
