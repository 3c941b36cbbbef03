// A consumer: prints the log from the start, then each message as it arrives, on any
// node; when its node goes away it goes on at the next, with no gap and no repeat.
// COUNT=5 stops after five messages.
//
//   swift run ReplogConsumerExample http://127.0.0.1:5001 http://127.0.0.1:5002
import Foundation
import ReplogClient

let nodes = CommandLine.arguments.dropFirst()
let log = ReplogClient(nodes: nodes.isEmpty ? ["http://127.0.0.1:5000"] : Array(nodes))
let count = ProcessInfo.processInfo.environment["COUNT"].flatMap(Int.init) ?? .max

for try await entry in log.follow(from: 1).prefix(count) {
    print("\(entry.seq): \(entry.message)")
}
