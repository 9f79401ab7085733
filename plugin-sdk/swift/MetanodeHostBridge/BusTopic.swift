/// The bus's topic rule, shared by every host: a subscription is an exact topic or a prefix ending in ".*", which
/// matches any topic with at least one more segment ("orders.*" matches "orders.created", "orders.eu.created", not
/// "orders").
public enum BusTopic {
    public static func matches(subscription: String, topic: String) -> Bool {
        if subscription.hasSuffix(".*") {
            let prefix = subscription.dropLast()  // keeps the dot: "orders."
            return topic.count > prefix.count && topic.hasPrefix(prefix)
        }
        return subscription == topic
    }

    /// For a wildcard subscription, the prefix (with its final dot) that topics must start with; nil if exact.
    public static func wildcardPrefix(_ subscription: String) -> Substring? {
        subscription.hasSuffix(".*") ? subscription.dropLast() : nil
    }
}
