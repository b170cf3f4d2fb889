import Foundation

/// Checks what a subscriber received against the oplog: every event delivered at least once, and the first
/// appearance of each in oplog order. Events are numbered 0, 1, 2, … in oplog order (the test documents'
/// `_id: "id<n>"`).
public struct EventOrderChecker: Sendable {
    /// Every event below this one appeared.
    public private(set) var nextExpected: Int
    /// Messages observed, duplicates included.
    public private(set) var received = 0
    public private(set) var duplicates = 0
    /// The first few repeated events, for reports.
    public private(set) var someDuplicates: [Int] = []
    /// One line per event whose first appearance came before an earlier event's.
    public private(set) var violations: [String] = []
    /// Events that appeared ahead of a missing earlier one.
    private var early: Set<Int> = []

    public init(first: Int = 0) { nextExpected = first }

    /// Open while a bridge restarts at the end of a rolled-over oplog: events from here on may be missing up to the
    /// first one it delivers.
    private var lossFrom: Int?
    /// Events counted as history lost.
    public private(set) var lost = 0

    /// Events from here (up to ``unorderedUntil``) are not checked for first-appearance order: several bridges
    /// restarted at *their own* end of a rolled-over oplog (HA with `--on-history-lost from-end`), so one may
    /// deliver events after another's start before the other delivers its first. Repeats are still repeats.
    private var unorderedFrom: Int?
    private var unorderedUntil: Int?
    /// Events of the unordered range seen (tells a late first appearance from a repeat).
    private var seenUnordered: Set<Int> = []
    /// Events at or after the open loss window's start seen while it is open.
    private var seenSinceLoss: Set<Int> = []
    /// First appearances out of order in the unordered range (not violations).
    public private(set) var reorderedAfterLoss = 0

    private func isUnordered(_ id: Int) -> Bool {
        guard let unorderedFrom, id >= unorderedFrom else { return false }
        return unorderedUntil.map { id < $0 } ?? true
    }

    /// One message for event `id`.
    public mutating func observe(_ id: Int) {
        received += 1
        if let lossFrom, id >= lossFrom { seenSinceLoss.insert(id) }
        if isUnordered(id) {
            guard seenUnordered.insert(id).inserted else {
                duplicates += 1
                if someDuplicates.count < 10 { someDuplicates.append(id) }
                return
            }
            if id == nextExpected {
                nextExpected += 1
                while early.remove(nextExpected) != nil { nextExpected += 1 }
            } else if id > nextExpected {
                if lossFrom == nil { reorderedAfterLoss += 1 }
                early.insert(id)
            } else {
                // Counted as lost when the loss window closed; it arrived after all, late.
                lost -= 1
                reorderedAfterLoss += 1
            }
            return
        }
        if id < nextExpected || early.contains(id) {
            duplicates += 1
            if someDuplicates.count < 10 { someDuplicates.append(id) }
        } else if id == nextExpected {
            nextExpected += 1
            while early.remove(nextExpected) != nil { nextExpected += 1 }
        } else if let lossFrom, id >= lossFrom {
            early.insert(id)
        } else {
            if violations.count < 100 {
                violations.append("event \(id) appeared before event \(nextExpected)")
            }
            early.insert(id)
        }
    }

    /// The oplog rolled over: events before `id` that did not appear are history lost (the bridge counts it), and so
    /// are those from `id` up to the first one delivered after ``endHistoryLoss()`` — the bridge restarts at the end
    /// of the oplog, wherever that is when its cursor opens.
    public mutating func beginHistoryLoss(at id: Int) {
        skip(to: id)
        lossFrom = id
        seenSinceLoss = []
    }

    /// Whether an event at or after the loss appeared (the restarted bridge delivers again).
    public var deliveredSinceLoss: Bool {
        guard let lossFrom else { return true }
        return nextExpected > lossFrom || early.contains { $0 >= lossFrom }
    }

    /// Closes the loss window: from the first event delivered since, everything must appear in order again —
    /// unless `orderChecked` is false (several bridges on one stream, each restarted at its own end): then the order
    /// of first appearances is not checked from the loss until ``checkOrder(from:)``.
    public mutating func endHistoryLoss(orderChecked: Bool = true) {
        guard let from = lossFrom else { return }
        lossFrom = nil
        if !orderChecked {
            if unorderedFrom == nil || unorderedUntil != nil {
                unorderedFrom = from
                unorderedUntil = nil
                seenUnordered = seenSinceLoss
            }
        }
        if let first = early.min() { skip(to: first) }
    }

    /// Ends the range opened by `endHistoryLoss(orderChecked: false)`: events from `id` on are checked again.
    public mutating func checkOrder(from id: Int) {
        guard unorderedFrom != nil, unorderedUntil == nil else { return }
        unorderedUntil = id
    }

    private mutating func skip(to id: Int) {
        guard id > nextExpected else { return }
        lost += id - nextExpected - early.count(where: { $0 < id })
        nextExpected = id
        early = early.filter { $0 >= id }
        while early.remove(nextExpected) != nil { nextExpected += 1 }
    }

    /// The `n` of a redis-oplog message about the document `{_id: "id<n>"}`, if it is one.
    public static func documentNumber(_ message: String) -> Int? {
        guard let range = message.range(of: "\"_id\":\"id") else { return nil }
        let digits = message[range.upperBound...].prefix { $0.isASCII && $0.isNumber }
        return Int(digits)
    }
}
