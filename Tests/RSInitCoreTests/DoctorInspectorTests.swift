import Testing

@testable import RSInitCore

/// The pure helpers of `rsinit doctor`'s fact gathering: member URIs and name resolution.
@Suite struct DoctorInspectorTests {
    @Test(arguments: [
        ("mongodb://mongodb:27017/", "mongo2:27017", "mongodb://mongo2:27017/"),
        ("mongodb://mongodb:27017", "mongo2:27017", "mongodb://mongo2:27017/"),
        ("mongodb://u:p%40ss@a:1,b:2/admin?tls=true", "c:3", "mongodb://u:p%40ss@c:3/admin?tls=true"),
        ("mongodb://a:1?replicaSet=rs0", "b:2", "mongodb://b:2/?replicaSet=rs0"),
        ("mongodb://u@x:1/?authSource=admin", "[::1]:27017", "mongodb://u@[::1]:27017/?authSource=admin"),
        ("mongodb+srv://u:p@cluster.example.com/", "h:1", "mongodb://h:1/"),
    ])
    func memberURIKeepsCredentialsAndOptions(uri: String, host: String, expected: String) {
        #expect(DoctorInspector.uri(uri, replacingHostsWith: host) == expected)
    }

    @Test func localhostResolvesToLoopback() throws {
        let addresses = try HostResolver.resolve("localhost").get()
        #expect(!addresses.isEmpty)
        #expect(addresses.allSatisfy(HostResolver.isLoopback(address:)), "\(addresses)")
    }

    @Test func numericAddressesResolveToThemselves() throws {
        #expect(try HostResolver.resolve("127.0.0.1").get() == ["127.0.0.1"])
        #expect(try HostResolver.resolve("10.1.2.3").get() == ["10.1.2.3"])
    }

    @Test func unknownNameIsAResolutionError() {
        guard case .failure(let error) = HostResolver.resolve("no-such-host.invalid") else {
            Issue.record("resolved")
            return
        }
        #expect(!error.message.isEmpty)
    }

    @Test(arguments: [
        ("127.0.0.1", true), ("127.1.2.3", true), ("::1", true), ("::ffff:127.0.0.1", true), ("10.0.0.1", false),
        ("172.17.0.2", false), ("fe80::1", false),
    ])
    func loopbackAddresses(address: String, loopback: Bool) {
        #expect(HostResolver.isLoopback(address: address) == loopback)
    }

    @Test func ownAddressesIncludeLoopback() {
        #expect(HostResolver.ownAddresses().contains("127.0.0.1"))
    }
}
