import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import ReplogCore
import ReplogStorage
import Testing
@testable import ReplogNode

/// Retention on a running cluster: readers are told what is gone, and a secondary that fell
/// behind the master's first kept seq starts its log again there, with the master's hashes.
@Suite struct RetentionNodeTests {
    /// s2 is away while retention drops the start of the master's log: when it is back, the
    /// master's stream sends it the log from its start, and s2 starts its log again there,
    /// holding exactly the master's entries (same hash) and saying so.
    @Test func aSecondaryBehindTheMastersFirstSeqStartsItsLogAgainThere() async throws {
        let master = InMemoryLogStore(segmentBytes: 100)
        let cluster = TestCluster(masterStore: master)
        cluster.transport.setPartitioned(true, "s2")
        try await cluster.withReplication {
            for index in 1...30 { _ = try await cluster.master.append(AppendRequest(message: "m\(index)", w: 2)) }
            #expect(master.applyRetention(RetentionPolicy(messages: 5), now: Date()) > 0)
            let start = master.start
            #expect(start.firstSeq > 20 && start.firstSeq <= 26)
            cluster.transport.setPartitioned(false, "s2")
            _ = try await cluster.master.append(AppendRequest(message: "after", w: 2))
            let s2 = cluster.replica("s2")
            // Its stream backs off after the failed deliveries: move the clock on until it is back.
            try await cluster.advance(by: .milliseconds(200)) { s2.replicaState.seq == 31 }
            #expect(s2.restartedAt == start.firstSeq)
            #expect(s2.store.start == start)
            #expect(s2.replicaState.seq == 31 && s2.replicaState.hash == master.hash(at: 31))
            #expect(try s2.read(from: start.firstSeq, limit: .max) == master.read(from: start.firstSeq, limit: .max))
            #expect(throws: LogStoreError.gone(firstSeq: start.firstSeq)) { try s2.read(from: 1, limit: 1) }
        }
    }

    /// `GET /messages` without `from` starts at the first kept seq; asking for a dropped seq
    /// (list, long poll or stream) is `410` with `firstSeq`; `/health` shows `firstSeq`.
    @Test func readersAreToldWhatIsGone() async throws {
        let store = InMemoryLogStore(segmentBytes: 100)
        let cluster = TestCluster(secondaries: 0, masterStore: store)
        for index in 1...30 { _ = try await cluster.master.append(AppendRequest(message: "m\(index)", w: 1)) }
        _ = store.applyRetention(RetentionPolicy(messages: 5), now: Date())
        let first = store.start.firstSeq
        #expect(first > 1)
        try await Application(router: cluster.masterNode.router()).test(.router) { client in
            try await client.execute(uri: "/messages", method: .get) { response in
                #expect(response.status == .ok)
                let page = try JSONDecoder().decode(MessagesPage.self, from: response.body)
                #expect(page.messages.first?.seq == first && page.messages.last?.seq == 30)
            }
            for uri in ["/messages?from=1", "/messages?from=\(first - 1)&wait=100", "/messages/stream?from=1"] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .gone, "\(uri)")
                    #expect(json(response.body)["firstSeq"] as? Int == first, "\(uri)")
                }
            }
            try await client.execute(uri: "/messages/stream", method: .get, headers: [.init("Last-Event-ID")!: "3"]) { response in
                #expect(response.status == .gone)
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(json(response.body)["firstSeq"] as? Int == first)
            }
        }
    }
}
