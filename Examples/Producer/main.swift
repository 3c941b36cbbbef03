// A producer: appends five messages, each once the master and one secondary hold it, then
// three more as one batch (all of them or none, at consecutive seqs). Every append carries
// an idempotency key, so the client retries it safely when a node is down or the cluster
// has no quorum for a moment.
//
//   swift run ReplogProducerExample http://127.0.0.1:5001 http://127.0.0.1:5000
import ReplogClient

let nodes = CommandLine.arguments.dropFirst()
let log = ReplogClient(nodes: nodes.isEmpty ? ["http://127.0.0.1:5000"] : Array(nodes))

for number in 1...5 {
    let appended = try await log.append("order \(number) paid", w: 2)
    print("appended seq \(appended.seq): \(appended.message)")
}
let batch = try await log.append(batch: (6...8).map { "order \($0) paid" }, w: 2)
print("appended seqs \(batch.firstSeq)...\(batch.lastSeq) as one batch")
