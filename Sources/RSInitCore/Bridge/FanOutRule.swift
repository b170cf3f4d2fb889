/// Publishes a namespace's events on extra redis-oplog channels, so subscriptions that use redis-oplog's
/// `namespace:` or `channel:` options see writes made outside Meteor (redis-oplog issue #279).
///
/// redis-oplog (with `globalRedisPrefix: "<db>."`) listens on `<db>.<X>::<collection>` for `namespace: X` and on
/// `<db>.<C>` for `channel: C`; a rule adds that channel to the collection channel and the `::<id>` channel, which
/// redis-oplog keeps whatever the namespace. Rules are static: a namespace that depends on a document's fields
/// cannot be derived from an update's diff, so it is not offered.
///
/// Syntax: `<pattern>=namespace:<X>` or `<pattern>=channel:<C>`, `<pattern>` as in `--include` (`db`, `db.coll`,
/// `*` wildcards).
public struct FanOutRule: Sendable, Equatable, CustomStringConvertible {
    public enum Target: Sendable, Equatable {
        case namespace(String)
        case channel(String)
    }

    let pattern: NamespaceFilter.Pattern
    public let patternText: String
    public let target: Target

    public init(_ text: String) throws(FanOutRuleError) {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty else { throw FanOutRuleError(rule: text) }
        let targetParts = parts[1].split(separator: ":", maxSplits: 1).map(String.init)
        guard targetParts.count == 2, !targetParts[1].isEmpty else { throw FanOutRuleError(rule: text) }
        switch targetParts[0] {
        case "namespace": target = .namespace(targetParts[1])
        case "channel": target = .channel(targetParts[1])
        default: throw FanOutRuleError(rule: text)
        }
        patternText = parts[0]
        pattern = NamespaceFilter.Pattern(parts[0])
    }

    /// The extra channel for an event of `namespace`, nil when the rule does not apply.
    public func channel(for namespace: Namespace, prefix: String) -> String? {
        guard pattern.matches(namespace) else { return nil }
        switch target {
        case .namespace(let name): return prefix + namespace.database + "." + name + "::" + namespace.collection
        case .channel(let name): return prefix + namespace.database + "." + name
        }
    }

    public var description: String {
        switch target {
        case .namespace(let name): return "\(patternText)=namespace:\(name)"
        case .channel(let name): return "\(patternText)=channel:\(name)"
        }
    }
}

public struct FanOutRuleError: Error, Sendable, CustomStringConvertible {
    public var rule: String
    public var description: String {
        "invalid fan-out rule \"\(rule)\": expected <db>[.<collection>]=namespace:<name> or =channel:<name>"
    }
}

extension RedisOplogFormat {
    /// The collection channel, the `::<id>` channel, then one channel per matching rule (no duplicates).
    public static func channels(for event: ChangeEvent, prefix: String, fanOut: [FanOutRule]) -> [String] {
        var channels = channels(for: event, prefix: prefix)
        for rule in fanOut {
            if let channel = rule.channel(for: event.namespace, prefix: prefix), !channels.contains(channel) {
                channels.append(channel)
            }
        }
        return channels
    }
}
