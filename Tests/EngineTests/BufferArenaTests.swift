import XCTest
@testable import Engine

/// The arena's bookkeeping: best fit, splitting, merging with both neighbours, growing the block at the top,
/// refusing past its reservation, and handing pages back.
final class BufferArenaTests: XCTestCase {
    let page = BufferArena.granule

    private func arena(_ megabytes: Int = 64) throws -> BufferArena {
        try XCTUnwrap(BufferArena(reserving: megabytes << 20))
    }

    func testAFreedBlockServesASmallerRequestAndTheRestStaysFree() throws {
        let a = try arena()
        let big = try XCTUnwrap(a.take(8 * page))
        _ = try XCTUnwrap(a.take(page))            // keeps the freed block from merging into the top
        a.give(big, bytes: 8 * page)
        let half = try XCTUnwrap(a.take(4 * page))
        let other = try XCTUnwrap(a.take(3 * page + 1))  // rounded up to 4 pages: the rest of the block
        XCTAssertEqual(half, big)
        XCTAssertEqual(other, big + 4 * page)
        XCTAssertEqual(a.top, 9 * page, "no new pages while a free block fits")
        XCTAssertEqual(a.freeBytes, 0)
    }

    func testBestFitPicksTheSmallestBlockThatFits() throws {
        let a = try arena()
        let p3 = try XCTUnwrap(a.take(3 * page)); _ = a.take(page)
        let p2 = try XCTUnwrap(a.take(2 * page)); _ = a.take(page)
        a.give(p3, bytes: 3 * page)
        a.give(p2, bytes: 2 * page)
        XCTAssertEqual(a.take(2 * page), p2, "the 2-page hole, not the first hole that fits")
        XCTAssertEqual(a.take(2 * page), p3)
    }

    func testAFreedBlockMergesWithBothNeighbours() throws {
        let a = try arena()
        let x = try XCTUnwrap(a.take(page)), y = try XCTUnwrap(a.take(2 * page)), z = try XCTUnwrap(a.take(page))
        _ = try XCTUnwrap(a.take(page))            // a used block after them
        a.give(x, bytes: page)
        a.give(z, bytes: page)
        XCTAssertEqual(a.freeBytes, 2 * page)
        a.give(y, bytes: 2 * page)                 // joins x before it and z after it
        XCTAssertEqual(a.freeBytes, 4 * page)
        XCTAssertEqual(a.take(4 * page), x, "one 4-page block where three were")
        XCTAssertEqual(a.top, 5 * page)
    }

    func testAFreeBlockAtTheTopGrowsInsteadOfANewOne() throws {
        let a = try arena()
        _ = try XCTUnwrap(a.take(page))
        let last = try XCTUnwrap(a.take(2 * page))
        a.give(last, bytes: 2 * page)
        XCTAssertEqual(a.take(5 * page), last)
        XCTAssertEqual(a.top, 6 * page, "grown by the 3 missing pages only")
    }

    func testPastTheReservationItRefusesAndStaysUsable() throws {
        let a = try arena(64)
        XCTAssertNil(a.take(65 << 20))
        let p = try XCTUnwrap(a.take(32 << 20))
        XCTAssertNil(a.take(33 << 20))
        a.give(p, bytes: 32 << 20)
        XCTAssertNotNil(a.take(64 << 20), "the whole range, once free")
    }

    func testMemoryIsWritableAndTrimReturnsZeroedPages() throws {
        let a = try arena()
        let p = try XCTUnwrap(a.take(3 * page)).bindMemory(to: Float.self, capacity: 3 * page / 4)
        for i in 0..<(3 * page / 4) { p[i] = Float(i) }
        XCTAssertEqual(p[3 * page / 4 - 1], Float(3 * page / 4 - 1))
        a.give(UnsafeMutableRawPointer(p), bytes: 3 * page)
        a.trim()
        let again = try XCTUnwrap(a.take(3 * page)).bindMemory(to: Float.self, capacity: 3 * page / 4)
        XCTAssertEqual(again, p)
        XCTAssertEqual(again[0], 0); XCTAssertEqual(again[3 * page / 4 - 1], 0, "trimmed pages come back zero-filled")
    }

    func testPoolServesLargeTensorsFromFreedBuffersOfOtherSizes() throws {
        let n = BufferPool.arenaMinimumCount * 8
        do { _ = Tensor.zeros([n]) }
        let top = try XCTUnwrap(BufferPool.shared.arenaTop)
        // The freed buffer serves two tensors of half its size without new pages (exact-size pooling could not).
        let a = Tensor.zeros([n / 2]), b = Tensor.ones([n / 2])
        XCTAssertEqual(BufferPool.shared.arenaTop, top)
        XCTAssertEqual(a.data[n / 2 - 1], 0); XCTAssertEqual(b.data[0], 1)
    }

    func testBatchesOfVaryingSizeDoNotEachKeepABuffer() throws {
        // A P2C step's batch is its clips plus a varying number of partners, so every activation size varies
        // from step to step; exact-size pooling kept a buffer per size (an ESC-10 P2C epoch: 4.1 GB, 734 MB now).
        let rows = 4096, width = 64
        let before = try XCTUnwrap(BufferPool.shared.arenaTop)
        for extra in 0..<24 { _ = Tensor.zeros([rows + extra * 97, width]) }
        let grown = try XCTUnwrap(BufferPool.shared.arenaTop) - before
        XCTAssertLessThanOrEqual(grown, (rows + 23 * 97) * width * 4 + BufferArena.granule,
                                 "at most the largest buffer's worth of new pages, not the sum of all 24")
    }
}
