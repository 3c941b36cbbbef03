#!/usr/bin/env python3
"""Breaks replog's guarantees one at a time and shows which tests notice.

Each mutant below is a small, deliberate bug in the code that keeps one guarantee (the
secondary stores duplicates, the master counts one acknowledgement too many, ...). For each
one this script edits the source, builds, runs the whole test suite (the README's command),
puts the file back, and reports the tests that failed (the whole output of the run that failed
is kept in $TMPDIR/replog-mutant-<name>.log). A mutant that no test catches means
a guarantee without a test that would fail if it broke.

    python3 scripts/mutants.py            # every mutant: about 3-5 minutes each on a quiet machine (hours in all)
    python3 scripts/mutants.py dup quorum # only these
    python3 scripts/mutants.py --list     # what they are
    python3 scripts/mutants.py --check    # only that each still applies to the code (CI runs this)
    python3 scripts/mutants.py --nemesis 8 wcount oldepoch
                                          # only the real-network nemesis (as root), seeds 1, 2, ... up
                                          # to 8 runs of both topologies: which run first catches each
    python3 scripts/mutants.py --tests SecondaryInstanceTests acceptother secack
                                          # only the tests this filter names (a quick check that
                                          # a unit test still catches a mutant after a move)
    python3 scripts/mutants.py --restore  # undo mutants that a killed run left in the code

It edits files in this checkout, so it refuses to touch a file with uncommitted changes,
and puts the original back when it ends, is interrupted (Ctrl-C) or terminated (SIGTERM,
SIGHUP). Only SIGKILL leaves a mutant in place: `--check` then names it, and `--restore`
undoes it.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Mutant:
    name: str
    guarantee: str
    file: str
    find: str
    replace: str
    bug: str


MUTANTS = [
    Mutant("dup", "exactly-once on secondaries", "Sources/ReplogCore/HoldBackBuffer.swift",
           "guard entry.seq > contiguousSeq, heldBack[entry.seq] == nil else { continue }  // duplicate",
           "if entry.seq <= contiguousSeq { deliverable.append(entry); continue }",
           "a redelivered entry is stored again"),
    Mutant("order", "total order, no gaps", "Sources/ReplogCore/HoldBackBuffer.swift",
           "if entry.seq == contiguousSeq + 1 {",
           "if entry.seq > contiguousSeq {",
           "a secondary stores seq 4 before seq 3 arrived"),
    Mutant("wcount", "write concern", "Sources/ReplogCore/WriteConcernTracker.swift",
           "1 + acknowledged.values.count { $0 >= seq }",
           "2 + acknowledged.values.count { $0 >= seq }",
           "the master counts one holder too many"),
    Mutant("quorum", "quorum: read-only without a majority", "Sources/ReplogCore/Quorum.swift",
           "public var isWritable: Bool { available >= required }",
           "public var isWritable: Bool { true }",
           "the master stays writable without a majority"),
    Mutant("health", "health from heartbeats", "Sources/ReplogCore/PeerHealth.swift",
           "if consecutiveMisses >= thresholds.suspectAfterMisses { return move(to: .suspected) }",
           "",
           "a secondary that misses heartbeats is never suspected"),
    Mutant("notimeout", "timeout: stop waiting, keep replicating", "Sources/ReplogNode/Master.swift",
           "guard let timeout else { return await suspend(waiter, seq: seq) }",
           "guard let timeout, false else { return await suspend(waiter, seq: seq) }",
           "an append's timeout is ignored and the client waits for ever"),
    Mutant("fsyncgate", "a failed fsync is final", "Sources/ReplogStorage/GroupCommit.swift",
           "let failure: any Error = (error as? LogStoreError)?.isFinal == true ? fail(error) : error",
           "let failure: any Error = error",
           "after a failed fsync the next append's fsync is trusted again"),
    Mutant("idem", "idempotent retries", "Sources/ReplogCore/ReplicationInstance.swift",
           "if let id = request.id, let seq = idempotency.seq(for: id) {",
           "if false, let id = request.id, let seq = idempotency.seq(for: id) {",
           "a retry with the same id appends again"),
    Mutant("nofsync", "durable before acknowledged", "Sources/ReplogStorage/GroupCommit.swift",
           "private var waitsForDisk: Bool { store.isDurable }",
           "private var waitsForDisk: Bool { false }",
           "--fsync always answers and replicates without waiting for the fsync"),
    Mutant("ackbeforefsync", "durable before acknowledged (caught by the simulation's power losses)",
           "Sources/ReplogStorage/GroupCommit.swift",
           "defer { if policy == .always { fsyncDuration.recordNanoseconds((clock.now - started).nanoseconds) } }",
           "defer { if policy == .always { fsyncDuration.recordNanoseconds((clock.now - started).nanoseconds) } }\n"
           "        state.withLock { $0.durableSeq = max($0.durableSeq, target) }",
           "group commit reports entries durable as its fsync starts, not when it ends"),
    Mutant("pastdurable", "nothing leaves the master before its fsync", "Sources/ReplogCore/ReplicationInstance.swift",
           "sendsBeforeDurable ? written() : durable()",
           "written()",
           "the stream replicates entries still waiting for the master's fsync"),
    Mutant("ownfsync", "an elected master answers only after its own fsync (fsync overlap)",
           "Sources/ReplogNode/Master.swift",
           "            try await commit.makeDurable(through: seq)\n",
           "            if !sendsBeforeDurable { try await commit.makeDurable(through: seq) }\n",
           "an elected master counts itself towards w before its own fsync is done"),
    Mutant("nodivergence", "replicas prove they hold the same log", "Sources/ReplogCore/ReplicationInstance.swift",
           "if let held = replica.hash, let expected = masterHash, held != expected {",
           "if let held = replica.hash, let expected = masterHash, held != expected, held.isEmpty {",
           "the master never takes a secondary whose hash differs from its own for diverged"),
    Mutant("falsedivergence", "replicas prove they hold the same log (no false alarm; caught by the simulation)",
           "Sources/ReplogNode/Master+Heartbeats.swift",
           "let masterHash = store.hash(at: replica.seq)",
           "let masterHash = store.hash(at: lastSeq)",
           "the master compares a secondary's hash with its own at its last seq, not at the secondary's"),
    Mutant("wherediverged", "replicas prove they hold the same log (where they part)", "Sources/ReplogCore/DivergenceSearch.swift",
           "if theirs == ours { agreed = max(agreed, seq) } else { differs = min(differs, seq) }",
           "if theirs != ours { agreed = max(agreed, seq) } else { differs = min(differs, seq) }",
           "the search for where a diverged log parts goes the wrong way and names the wrong seq"),
    Mutant("noprotect", "a reachable node needs a cluster secret (protected mode)", "Sources/ReplogNode/ClusterSecret.swift",
           "guard !hasSecret, !insecure, !isLoopback(host) else { return nil }",
           "guard !hasSecret, !insecure, !isLoopback(host), false else { return nil }",
           "a node on 0.0.0.0 without a secret starts, and anyone who reaches it can replicate into it"),
    Mutant("notoken", "client tokens guard appends (and, if chosen, reads)", "Sources/ReplogNode/HTTP/ClientTokenGuard.swift",
           "admitted = admitted || difference == 0",
           "admitted = true",
           "any bearer token of the right length is taken for a client token"),
    Mutant("acceptother", "a secondary refuses other content at a seq it holds", "Sources/ReplogCore/SecondaryInstance.swift",
           "if let held = stored[entry.seq], held != entry.message { throw Diverged(seq: entry.seq) }",
           "_ = stored",
           "a redelivery with another message at a held seq is acknowledged as a duplicate"),
    Mutant("secack", "a secondary acknowledges only what is durable", "Sources/ReplogCore/SecondaryInstance.swift",
           "min(contiguousSeq, completeSeq, durableSeq)",
           "min(contiguousSeq, completeSeq)",
           "a heartbeat answer counts entries still waiting for their fsync"),
    Mutant("norewind", "catch-up after a secondary restarts", "Sources/ReplogCore/ReplicationInstance.swift",
           "peer.stream.sentThrough = peer.matched\n",
           "\n",
           "the stream keeps sending from where it was, not from what a restarted secondary holds"),
    Mutant("noretry", "retries until delivered", "Sources/ReplogCore/ReplicationInstance.swift",
           "guard stream.phase == .backingOff else { return }",
           "guard false else { return }",
           "a stream gives up after its first failed round"),
    Mutant("nosecret", "node-to-node requests prove the cluster secret", "Sources/ReplogNode/HTTP/SecondaryRoutes.swift",
           "    guard let secret else { return stamp }",
           "    guard let secret, false else { return stamp }",
           "a secondary with a secret accepts unsigned deliveries"),
    Mutant("crosssite", "no writes from other web sites", "Sources/ReplogNode/HTTP/CrossSiteGuard.swift",
           "guard request.method != .get, request.method != .head else { return try await next(request, context) }",
           "return try await next(request, context)",
           "a page of another origin can append through a browser"),
    Mutant("nolock", "one node per data dir", "Sources/ReplogStorage/DataDirectory.swift",
           "guard fcntl(descriptor, F_SETLK, &wanted) == 0 else {",
           "guard fcntl(descriptor, F_SETLK, &wanted) == 0 || true else {",
           "a second process opens a data dir in use"),
    Mutant("idconflict", "a reused id with another message is refused", "Sources/ReplogCore/ReplicationInstance.swift",
           "guard Self.retryRepeats(messages, isBatch: request.batch != nil, stored: stored(seq, messages.count)) else {",
           "guard Self.retryRepeats(messages, isBatch: request.batch != nil, stored: stored(seq, messages.count)) || true else {",
           "a reused id with a different message is answered as a retry"),
    Mutant("doublevote", "one vote per node per epoch (one master per epoch)", "Sources/ReplogCore/Failover.swift",
           "let free = record.votedFor == nil || record.votedFor == request.candidate",
           "let free = true",
           "a node votes for two candidates in one epoch"),
    Mutant("shortlog", "a new master holds every majority-acknowledged write", "Sources/ReplogCore/Failover.swift",
           "let upToDate = request.log >= log",
           "let upToDate = request.log.epoch >= log.epoch || true",
           "a candidate with a shorter (or older) log is elected"),
    Mutant("nocheckquorum", "a deposed or cut-off master takes no appends", "Sources/ReplogCore/Failover.swift",
           "lastAnswer[member].map { now - $0 < settings.electionTimeout.upperBound } ?? false",
           "lastAnswer[member] != nil",
           "a master that no majority answers lately keeps taking appends"),
    Mutant("noepochgate", "a new master takes appends only once a majority holds its start (caught by "
           "FailoverInstanceTests; the simulation has not met Raft's figure-8 schedule that needs it)", "Sources/ReplogCore/Failover.swift",
           "public var takeoverConfirmed: Bool { role == .master && (takeover?.holders.count ?? 0) >= settings.majority }",
           "public var takeoverConfirmed: Bool { role == .master }",
           "a new master takes appends before a majority holds its log through its start"),
    Mutant("staletail", "a log position dates only the new master's entries to its epoch (no write acknowledged by a majority lost)",
           "Sources/ReplogCore/HistoryAdoption.swift",
           "guard facts.storedBefore <= start.after || facts.startedAgain, holdsStart else { return false }",
           "guard holdsStart else { return false }",
           "a deposed master's own tail is dated to the new epoch, so it can win without a majority-acknowledged write"),
    Mutant("keysstay", "idempotency keys travel with their entries (a retry after a failover appends nothing)",
           "Sources/ReplogCore/SecondaryInstance.swift",
           "let readyIDs = ready.map { heldBackIDs[$0.seq] }",
           "let readyIDs = ready.map { _ -> String? in nil }",
           "a secondary stores the entries without their keys"),
    Mutant("undurable-list", "readers see only durable messages", "Sources/ReplogNode/Master.swift",
           "try commit.readDurable(from: seq, limit: watch.limit(limit, from: seq, level: level))\n    }",
           "try store.read(from: seq, limit: watch.limit(limit, from: seq, level: level))\n    }",
           "the master lists messages whose fsync has not finished (or failed)"),
    Mutant("norestart", "retention: a secondary behind the master's first seq starts its log again there",
           "Sources/ReplogCore/SecondaryInstance.swift",
           "        heldLink != masterLink\n",
           "        heldLink != masterLink && false\n",
           "a secondary that lacks what retention dropped holds the rest back forever"),
    Mutant("unvouched", "retention: only what a hash vouches for counts towards w", "Sources/ReplogCore/ReplicationInstance.swift",
           "guard seq > 0, seq < firstSeq - 1 else { return self }",
           "guard seq > 0, seq < firstSeq - 1, Bool(\"false\")! else { return self }",
           "a member that reports a seq before the master's start counts towards w unchecked"),
    Mutant("nostartmark", "retention: a secondary behind the master's first seq starts its log again there",
           "Sources/ReplogCore/ReplicationInstance.swift",
           "return next > peer.stream.sentThrough + 1 ? .sendFromStart(limit: available) : .send(from: next, limit: available)",
           "return .send(from: next, limit: available)",
           "the master sends a secondary that lacks what retention dropped the rest without the log's start, so it holds it back forever"),
    Mutant("restarthistory", "retention: a log started again takes on its master's epochs", "Sources/ReplogCore/HistoryAdoption.swift",
           "(facts.startedAgain && facts.firstSeq - 1 >= start.after)",
           "(facts.startedAgain && Bool(\"false\")!)",
           "a member that started its log again keeps an older epoch history and votes for a shorter log"),
    Mutant("restartincarnation", "retention: a log started again is news to the master", "Sources/ReplogCore/SecondaryInstance.swift",
           "logRestarts == 0 ? baseIncarnation : \"\\(baseIncarnation)+\\(logRestarts)\"",
           "baseIncarnation",
           "a member that started its log again answers with its old incarnation and waits for a gap nobody resends"),
    Mutant("laterstartkept", "retention: a member that cannot show the master's start starts again", "Sources/ReplogCore/SecondaryInstance.swift",
           "        heldLink != masterLink\n",
           "        firstSeq > contiguousSeq + 1 || heldLink.map { $0 != masterLink } == true\n",
           "a member whose own start is later keeps its log, though it can be neither checked nor cut"),
    Mutant("forgetkeys", "retention keeps the idempotency keys of what it drops", "Sources/ReplogStorage/FileLogStore.swift",
           "state.closedUnsynced.removeAll { $0 < plan.start.firstSeq }\n",
           "state.closedUnsynced.removeAll { $0 < plan.start.firstSeq }\n            state.recentIDs.removeAll { $0.seq < plan.start.firstSeq }\n",
           "retention forgets the keys of the entries it drops"),
    Mutant("heldbackepoch", "failover: a secondary never mixes two masters' entries", "Sources/ReplogCore/SecondaryInstance.swift",
           "guard let epoch, epoch != latestEpoch else { return }",
           "guard let epoch, epoch != latestEpoch, Bool(\"false\")! else { return }",
           "entries an earlier master sent, held back for a gap, are released behind a later master's"),
    Mutant("nostartfile", "retention: the log's new start reaches the disk before its segments go",
           "Sources/ReplogStorage/FileLogStore.swift",
           "        try plan.start.save(in: directory, ids: Array(droppedIDs))\n",
           "",
           "a restart after retention finds no start and takes the remaining segments for a damaged log"),
    Mutant("batchmarks", "a batch is all or nothing (the master marks it)", "Sources/ReplogCore/AppendRequest.swift",
           "let continues = batch == nil ? [] : entries.map { $0.seq < seq + entries.count - 1 }",
           "let continues: [Bool] = []",
           "the master writes a batch as separate messages, so a crash can keep part of it"),
    Mutant("secmarks", "a batch is all or nothing (secondaries keep the marks)", "Sources/ReplogCore/SecondaryInstance.swift",
           "let readyContinues = heldBackContinuing.isEmpty ? [] : ready.map { heldBackContinuing.contains($0.seq) }",
           "let readyContinues: [Bool] = []",
           "a secondary stores a batch's records without their marks and lists part of one"),
    Mutant("batchcap", "a batch is all or nothing (nobody lists part of one)", "Sources/ReplogStorage/GroupCommit.swift",
           "waitsForDisk ? min(state.withLock { $0.durableSeq }, store.completeSeq) : store.completeSeq",
           "waitsForDisk ? state.withLock { $0.durableSeq } : store.lastSeq",
           "a node lists and claims part of a batch it holds"),
    Mutant("neverunwritten", "an answered append survives a crash of the process (interval, never)",
           "Sources/ReplogStorage/GroupCommit.swift",
           "private var waitsForDisk: Bool { store.isDurable }",
           "private var waitsForDisk: Bool { policy == .always && store.isDurable }",
           "under `never` and `interval` an append is answered before it is written"),
    Mutant("refusedfinal", "a full disk is not final", "Sources/ReplogStorage/GroupCommit.swift",
           "if case .refusedWrite = self { false } else { true }",
           "true",
           "a write the disk refused stops the node for good, like a failed fsync"),
    Mutant("noretrywrite", "a full disk is not final (the master tries the write again)", "Sources/ReplogNode/Master.swift",
           "if commit.writeWasRefused { await commit.retryRefusedWrite() }",
           "if commit.writeWasRefused, Bool(\"false\")! { await commit.retryRefusedWrite() }",
           "a master whose write the disk refused never writes again, room or not"),
    Mutant("closedsync", "what a node calls durable is fsynced (segments closed during a write)",
           "Sources/ReplogStorage/FileLogStore.swift",
           "state.closedUnsynced.removeAll { closedWhole.contains($0) }",
           "state.closedUnsynced.removeAll { seq in closed.contains { $0.firstSeq == seq } }",
           "a segment closed while a sync wrote is never fsynced after its last bytes are written"),
    Mutant("batchrecovery", "a batch is all or nothing (recovery)", "Sources/ReplogStorage/FileLogStore.swift",
           "if let first = openBatch.first {",
           "if let first = openBatch.first, Bool(\"false\")! {",
           "recovery keeps the records of a batch whose end is missing"),
    Mutant("batchtakeover", "a batch is all or nothing (failover)", "Sources/ReplogCore/Failover.swift",
           "completeSeq < lastSeq ? completeSeq : nil",
           "nil",
           "a node elected with part of a batch keeps it, and its next append reads as the batch's end"),
    Mutant("chunkescape", "every answer and event is valid JSON: control characters are escaped",
           "Sources/ReplogCore/JSONText.swift",
           "return hasByteBelow(word, 0x20) ||",
           "return hasByteBelow(word, 0x10) ||",
           "a control character from 0x10 to 0x1f inside an 8-byte run is copied unescaped"),
    Mutant("hwcrc", "a damaged record is never read as good: the CRC-32C in hardware is the definition's",
           "Sources/CReplogCRC32C/CReplogCRC32C.c",
           "crc = _mm_crc32_u64(crc, word);",
           "crc = _mm_crc32_u64(crc, word & ~1ull);",
           "the hardware checksum ignores one bit in every eight bytes"),
    Mutant("layoutcrc", "a damaged record is never read as good: every record's checksum covers its whole payload",
           "Sources/ReplogStorage/RecordFraming.swift",
           "let checksum = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[headerSize..<size]))",
           "let checksum = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[headerSize..<size - 1]))",
           "the record writer leaves the payload's last byte out of the checksum"),
    Mutant("streamloop", "appends and replication stay on one thread (issue 17): a peer's connections live on its stream's event loop",
           "Sources/ReplogNode/HTTP/PeerConnections.swift",
           "return try await ClientBootstrap(group: loop)",
           "return try await ClientBootstrap(group: group)",
           "connections to a peer open on any event loop, so a batch's answer wakes another thread"),
    Mutant("routesoffloop", "appends and replication stay on one thread (issue 17): routes run on the connection's event loop",
           "Sources/ReplogNode/HTTP/NodeHTTPChannel.swift",
           "await withTaskExecutorPreference(EventLoopTaskExecutor(value.channel.eventLoop)) {",
           "await withTaskExecutorPreference(nil) {",
           "Hummingbird's routes run on Swift's thread pool again: two thread hops per request"),
    Mutant("voteonloop", "an election's disk writes leave the event loop and the node's lock: a vote waits for its record's write on the thread pool",
           "Sources/ReplogNode/KeptValue.swift",
           "try await io.run { [write] in try write?(value) }",
           "try write?(value)",
           "a vote's write of election.json blocks the thread (an event loop) of whoever asked"),
    Mutant("answerbeforesave", "a vote, an epoch and an epoch start outlive a restart (one master per epoch)",
           "Sources/ReplogNode/Node.swift",
           "        try await election.keep(through: version)",
           "        _ = version",
           "a failover node answers before the election record behind the answer is written"),
    Mutant("retentionstart", "no majority-acknowledged write is lost: a member dates the master's entries to its epoch even when retention drops the epoch's start during a delivery",
           "Sources/ReplogNode/Node+Secondary.swift",
           "heldHash: { [store] seq in seq == epochStart ? stored.markHash ?? store.hash(at: seq) : store.hash(at: seq) })",
           "heldHash: { [store] seq in store.hash(at: seq) })",
           "a member whose retention dropped the master's epoch start during a delivery keeps an older epoch's position and votes for a shorter log"),
    Mutant("undatedtail", "no majority-acknowledged write is lost: a member claims and votes only on entries it can date to their epoch",
           "Sources/ReplogCore/FailoverMember.swift",
           "            return adoption.undatedTail(facts, foundThrough: foundThrough, heldHash: heldHash)\n",
           "            return nil\n",
           "a member restarted with entries of a new epoch that no election record dates claims them, and votes for a shorter log"),
    Mutant("injectedundated", "no majority-acknowledged write is lost: a member claims and votes only on entries it can date to their epoch",
           "Sources/ReplogNode/Node+Secondary.swift",
           "            (stored, injected) = (failure.stored, failure)\n",
           "            throw failure\n",
           "a delivery that --error-rate fails after storing it leaves its entries undated"),
    Mutant("cutonloop", "an election's disk writes leave the event loop: a cut rewrites the log on the thread pool",
           "Sources/ReplogNode/Node+Secondary.swift",
           "cut = try await commit.io.value { [store, commit, watch] in",
           "cut = try await BlockingIO { try $0() }.value { [store, commit, watch] in",
           "a cut rewrites the log's tail on the event loop its request came in on"),
    Mutant("answerleftepoch", "no majority-acknowledged write is lost: a member never acknowledges to a master of an epoch it has left",
           "Sources/ReplogCore/FailoverMember.swift",
           "        guard kept.record.epoch > epoch else { return nil }\n",
           "        guard kept.record.epoch < 0 else { return nil }\n",
           "a member that voted in a later epoch while a delivery waited for its fsync acknowledges it to the deposed master"),
    Mutant("olderepoch", "a secondary never mixes two masters' entries: a delivery or cut of an earlier epoch after a later one's is refused",
           "Sources/ReplogCore/SecondaryInstance.swift",
           "if let epoch, let latestEpoch, epoch < latestEpoch {",
           "if let epoch, let latestEpoch, epoch < latestEpoch, false {",
           "a delivery (or a cut) the deposed master sent before the new master's is stored behind (or cuts) the new master's entries"),
    Mutant("storeleftepoch", "a secondary never mixes two masters' entries: a delivery that waited while the node moved to a later epoch stores nothing",
           "Sources/ReplogNode/Node+Secondary.swift",
           "if let epoch = delivery.epoch, let refusal = state.member.refusal(answeringIn: epoch) {",
           "if let epoch = delivery.epoch, let refusal = state.member.refusal(answeringIn: epoch), false {",
           "a delivery of a deposed master that waited for --delay is stored on the log the node's vote in a later epoch was cast on"),
    Mutant("cutleftepoch", "no majority-acknowledged write is lost: a cut that waited while the node moved to a later epoch cuts nothing",
           "Sources/ReplogNode/Node+Secondary.swift",
           "                if let epoch, let refusal = state.member.refusal(answeringIn: epoch) { throw StaleEpoch(answer: refusal) }\n                guard state.secondary.diskWork == nil else { return nil }",
           "                guard state.secondary.diskWork == nil else { return nil }",
           "a deposed master's cut that waited behind other disk work runs after the node voted in (or took over) a later epoch"),
    Mutant("votepastcut", "no majority-acknowledged write is lost: a node's position in an election ends where a cut under way ends its log",
           "Sources/ReplogNode/Node.swift",
           "state.member.position(lastSeq: min(commit.durableSeq, state.secondary.diskWork?.cutAfter ?? .max))",
           "state.member.position(lastSeq: commit.durableSeq)",
           "a node whose log a cut is rewriting votes, and stands, on the entries the cut takes"),
    Mutant("blankvote", "every node converges: a node that never heard a master learns its cluster from a candidate",
           "Sources/ReplogCore/FailoverMember.swift",
           "        if instance == nil, kept.record.epoch == 0, let members = request.members, let you = request.you,",
           "        if instance == nil, kept.record.epoch < 0, let members = request.members, let you = request.you,",
           "a master that kept its first epoch and stopped before any member heard of it is never elected again"),
    Mutant("takeoverduringcut", "no majority-acknowledged write is lost: a node takes over only once the disk work under way is done",
           "Sources/ReplogNode/Node.swift",
           "        await diskWorkDone()\n        if let complete = FailoverInstance.cutBeforeTakeover(",
           "        if let complete = FailoverInstance.cutBeforeTakeover(",
           "a node elected while a cut or a log restart rewrites its log takes appends into the log that work still rewrites"),
    Mutant("staletakeover", "one master per epoch: a node takes over only while it is still the master of the epoch it was elected in",
           "Sources/ReplogCore/FailoverMember.swift",
           "        instance?.role == .master && instance?.epoch == epoch\n",
           "        instance?.role == .master || instance?.epoch != epoch\n",
           "a node whose election record took long to save starts a master of its old epoch after it heard a later one"),
    Mutant("cutappend", "a 201 only for a message the log holds: an append whose log was cut while it waited for its fsync fails",
           "Sources/ReplogNode/Master.swift",
           "        if commit.cutCount != cutsBefore {\n",
           "        if commit.cutCount != cutsBefore, false {\n",
           "a deposed master answers 201 for an entry whose seq the new master's entry took"),
    Mutant("tailbehindstart", "every node converges: a member that holds no hash at a seq asked starts its log again",
           "Sources/ReplogCore/DivergenceSearch.swift",
           "            outcome = cuts ? .restartLog : .retryLater\n",
           "            outcome = .retryLater\n",
           "a deposed master's tail behind its own retention's start is never cut"),
    Mutant("restartonloop", "a secondary's disk writes leave the event loop: a log started again is rewritten on the thread pool",
           "Sources/ReplogNode/Node+Secondary.swift",
           "try await commit.io.value { [store, commit, watch, directory] in",
           "try await BlockingIO { try $0() }.value { [store, commit, watch, directory] in",
           "a delivery that starts the log again rewrites it on the event loop its request came in on"),
    Mutant("toolargelimit", "bad input gets a clear error: a body over a route's limit is a 413 that names that limit",
           "Sources/ReplogNode/HTTP/JSONResponses.swift",
           "        } catch is NIOTooManyBytesError {\n            throw APIError(.contentTooLarge, \"request body is larger than \\(limit) bytes\")\n        }\n",
           "        }\n",
           "a body over a route's limit is answered 413 without the limit it is over"),
    Mutant("lonemaster", "a master without other members is its own majority: it takes appends as it is elected",
           "Sources/ReplogCore/FailoverMember.swift",
           "        guard let instance, instance.acceptsAppends(now: now) else { return nil }\n",
           "        guard let instance, instance.acceptsAppends(now: now), Bool(\"false\")! else { return nil }\n",
           "a --failover master without secondaries announces it listens only after three election timeouts"),
    Mutant("usualcontrol", "bad input gets a clear error: the hand-written parser refuses what JSONDecoder refuses",
           "Sources/ReplogCore/AppendRequest.swift",
           'if byte == UInt8(ascii: "\\\\") || byte < 0x20 { return fail() }',
           'if byte == UInt8(ascii: "\\\\") { return fail() }',
           "a message with a raw control character is taken instead of refused as malformed JSON"),
    Mutant("usualtrailing", "bad input gets a clear error: the hand-written parser refuses what JSONDecoder refuses",
           "Sources/ReplogCore/AppendRequest.swift",
           "guard message != nil, reader.atEnd else { return nil }",
           "guard message != nil else { return nil }",
           "a body with bytes after its object is taken instead of refused as malformed JSON"),
    Mutant("fastpathoff", "appends take the fast path (issue 17)", "Sources/ReplogNode/HTTP/AppendFastPath.swift",
           "if unanswered == 1, let master = takes(head) {",
           "if unanswered == 1, let master = takes(head), Bool(\"false\")! {",
           "every append goes through Hummingbird's router again"),
    Mutant("fastpathorder", "HTTP/1.1 answers in request order (fast path)", "Sources/ReplogNode/HTTP/AppendFastPath.swift",
           "if unanswered == 1, let master = takes(head) {",
           "if let master = takes(head) {",
           "an append behind a request Hummingbird still answers is answered first"),
    Mutant("fastpathtoken", "no append without a client token (fast path)", "Sources/ReplogNode/HTTP/AppendFastPath.swift",
           "configuration.clientTokens.map({ $0.admits(head.headerFields[.authorization]) }) ?? true",
           "true",
           "the fast path appends without checking the client token"),
    Mutant("fastpathheld", "pipelined requests behind a waiting append are read (fast path)", "Sources/ReplogNode/HTTP/AppendFastPath.swift",
           "        for (index, part) in waiting.enumerated() {",
           "        for (index, part) in waiting.enumerated().prefix(0) {",
           "what a client pipelined behind an append is never answered"),
    Mutant("pagebytes", "a reader holds at most a page's bytes: pages of large messages are cut by their bytes",
           "Sources/ReplogNode/Master.swift",
           "limit: watch.limit(limit, from: seq, level: level), maxBytes: listingPageBytes)",
           "limit: watch.limit(limit, from: seq, level: level))",
           "a listing or stream page holds up to 1,000 messages whatever their size"),
    Mutant("secpagebytes", "a reader holds at most a page's bytes, on a secondary too",
           "Sources/ReplogNode/Node+Secondary.swift",
           "limit: watch.limit(limit, from: seq, level: level), maxBytes: listingPageBytes)",
           "limit: watch.limit(limit, from: seq, level: level))",
           "a secondary's listing or stream page holds up to 1,000 messages whatever their size"),
    Mutant("shortpageend", "a list is whole: a page cut by its bytes is not the end",
           "Sources/ReplogNode/HTTP/JSONResponses.swift",
           "if let last = firstPage.last, firstPage.count < limit {",
           "if let last = firstPage.last, firstPage.count < limit, firstPage.count == listingPageSize {",
           "a list whose first page was cut by its bytes ends there"),
    Mutant("readlocal", "a reader sees only what the cluster committed", "Sources/ReplogNode/LogWatch.swift",
           "func end(for level: ReadLevel) -> Int { level == .local ? durable : committed }",
           "func end(for level: ReadLevel) -> Int { durable }",
           "default reads show everything a node holds, including what a failover may cut"),
    Mutant("commitnondurable", "the commit point counts only durable copies", "Sources/ReplogNode/Master.swift",
           "if !isRetry, sendsBeforeDurable { wakeStreams(hasWaiter: waiter != nil) }",
           "if !isRetry, sendsBeforeDurable { handle { $0.onDurable(store.lastSeq); return [] }; wakeStreams(hasWaiter: waiter != nil) }",
           "the master counts its own entry towards the commit point before its fsync"),
    Mutant("commitoldepoch", "the commit point moves only once a majority holds the master's epoch start (Raft's rule, the start as its no-op entry)",
           "Sources/ReplogCore/ReplicationInstance.swift",
           "return majorityHolds >= epochStart ? majorityHolds : 0",
           "return majorityHolds",
           "a new master commits an older epoch's entries that a majority holds before a majority holds its start"),
    Mutant("commitwaitsownentry", "a new master shows the previous epoch's acknowledged writes once a majority holds its start, without an append of its own",
           "Sources/ReplogCore/ReplicationInstance.swift",
           "return majorityHolds >= epochStart ? majorityHolds : 0",
           "return majorityHolds > epochStart ? majorityHolds : 0",
           "readers of a master elected a moment ago see nothing of the previous epoch until the next append commits"),
    Mutant("commitshownunkept", "a reader sees only what the cluster committed, and never less after a restart: a node keeps its commit point in its data dir before showing it",
           "Sources/ReplogNode/CommitPoint.swift",
           "                try await io.run { try keep(seq) }\n",
           "                watch.committed(to: seq)\n                try await io.run { try keep(seq) }\n",
           "a node shows its readers a commit point it has not kept, so a restart may show them less"),
    Mutant("answerbeforecommit", "a reader who asks the master after a majority's 201 sees the write",
           "Sources/ReplogCore/ReplicationInstance.swift",
           "epochStart != nil && w > settings.clusterSize / 2",
           "epochStart != nil && w > settings.clusterSize",
           "an elected master answers a majority's 201 before it keeps a commit point that covers the write"),
    Mutant("unhashedtakeover", "one master per epoch takes appends only once a majority holds its log through its start",
           "Sources/ReplogCore/FailoverMember.swift",
           "let matched = answer.seq <= lastSeq && answer.hash != nil && answer.hash == masterHash ? answer.seq : nil",
           "let matched = answer.seq <= lastSeq ? answer.seq : nil",
           "an elected master counts towards its takeover a member whose log differs from its own"),
    Mutant("commitunmatched", "a member learns the commit point only as far as it holds the master's log",
           "Sources/ReplogCore/ReplicationInstance.swift",
           "public func commitSeq(for url: String) -> Int { min(commitSeq, peers[url]!.matched) }",
           "public func commitSeq(for url: String) -> Int { commitSeq }",
           "a member whose log parts from the master's shows its own entries at committed seqs"),
    Mutant("oldepoch", "a node never follows a master of an older epoch (one master per epoch)", "Sources/ReplogCore/Failover.swift",
           "public func admitsMaster(of epoch: Int) -> Bool { epoch >= self.epoch }",
           "public func admitsMaster(of epoch: Int) -> Bool { true }",
           "a node follows (stores for, acknowledges to) a master of an older epoch"),
    Mutant("unstampedheard", "a deposed master is not heard (one master per epoch)", "Sources/ReplogCore/Failover.swift",
           "guard let stamp else { return inFailover ? .refuse : .serveWithoutFailover }",
           "guard let stamp else { return .serveWithoutFailover }",
           "a member of a cluster with failover serves an unstamped request, which a master sends as it steps down"),
    Mutant("masteroutlivesnode", "a node stops whole: its master's requests end before its run returns",
           "Sources/ReplogNode/Node.swift",
           "                group.addTask(executorPreference: taskExecutor) {\n                    await withDiscardingTaskGroup { running in",
           "                _ = Task(executorPreference: taskExecutor) {\n                    await withDiscardingTaskGroup { running in",
           "a failover node's run returns while the master it ran still has requests in flight"),
    Mutant("unkept", "a vote, an epoch and an epoch start outlive a restart (one master per epoch)",
           "Sources/ReplogNode/Node.swift",
           "        let (version, changed) = election.set(member.kept)",
           "        let (version, changed) = (0, false)",
           "a failover node answers on what it never saved, so after a restart it may vote again in an epoch"),
    Mutant("unsignedcommit", "node-to-node requests prove the secret: the commit point a master sends is signed too",
           "Sources/ReplogNode/ClusterSecret.swift",
           'return (log ?? "") + "\\n" + stamp + (commit.map { "\\n" + $0 } ?? "")',
           'return (log ?? "") + "\\n" + stamp',
           "a captured request with another commit point passes the signature check"),
    Mutant("untypedrefusal", "a master reads what a member's refusal is, not which fields its body has",
           "Sources/ReplogCore/InternalWire.swift",
           "public var kind: InternalRefusal { refusal ?? (epoch != nil ? .staleEpoch : .foreignLog) }",
           "public var kind: InternalRefusal { epoch != nil ? .staleEpoch : refusal ?? .foreignLog }",
           "a refusal whose body happens to carry an epoch is taken for a stale epoch (the master would step down)"),
    Mutant("linearnoround", "a linearizable read holds every write a majority acknowledged before it",
           "Sources/ReplogNode/Master+Linearizable.swift",
           "guard await readRounds.confirm({ await self.confirmMajority() }) else { throw .notTheMaster(master: nil) }",
           "",
           "a master answers a linearizable read without confirming with a majority that it still is the master"),
]


def left_applied(mutant: Mutant, text: str) -> bool:
    """Whether a run that was killed left this mutant in the code."""
    return text.count(mutant.find) == 0 and text.count(mutant.replace) == 1


def source_of(mutant: Mutant) -> str:
    text = (ROOT / mutant.file).read_text()
    if left_applied(mutant, text):
        raise SystemExit(f"{mutant.name} is still applied in {mutant.file} (a run was killed): "
                         "undo it with `python3 scripts/mutants.py --restore`")
    count = text.count(mutant.find)
    if count != 1:
        raise SystemExit(f"{mutant.name}: the code it breaks is found {count} times in {mutant.file}, "
                         "not once: update MUTANTS in scripts/mutants.py to match the code")
    return text


def failing_tests(output: str) -> list[str]:
    names = re.findall(r"✘ Test (\w+)\(", output)
    return sorted(set(names))


def keep_output(mutant: Mutant, tests: subprocess.CompletedProcess) -> Path:
    """Saves a failing run's whole output, to tell a real catch from a flaky test."""
    path = Path(tempfile.gettempdir()) / f"replog-mutant-{mutant.name}.log"
    path.write_text(tests.stdout + tests.stderr)
    return path


def nemesis(mutant: Mutant, runs: int) -> tuple[str, list[str]]:
    """The real-network tests with seeds 1, 2, ... until a run fails: the verdict names the
    run (so the seed that replays it) and what its nemesis reported."""
    for seed in range(1, runs + 1):
        environment = {**os.environ, "REPLOG_NETWORK_SEED": str(seed), "REPLOG_REQUIRE_NETNS": "1"}
        tests = subprocess.run(["timeout", "-s", "KILL", "1200", "swift", "test", "--skip-build", "--disable-xctest",
                                "--filter", "RealNetworkTests"], cwd=ROOT, capture_output=True, text=True, errors="replace",
                               env=environment)
        if tests.returncode != 0:
            reports = re.findall(r"^real network, (\d+ nodes, seed \d+: .*violations)$", tests.stdout, re.MULTILINE)
            reports.append(f"output: {keep_output(mutant, tests)}")
            return f"caught by run {seed} of {runs}", reports
    return f"NOT CAUGHT in {runs} runs", []


def run(mutant: Mutant, nemesis_runs: int | None = None, tests_filter: str | None = None) -> tuple[str, list[str], float]:
    path = ROOT / mutant.file
    changed = subprocess.run(["git", "diff", "--quiet", "--", mutant.file], cwd=ROOT).returncode != 0
    if changed:
        raise SystemExit(f"{mutant.file} has uncommitted changes; commit or stash them first")
    original = source_of(mutant)
    started = time.monotonic()
    try:
        path.write_text(original.replace(mutant.find, mutant.replace))
        build = subprocess.run(["swift", "build", "--build-tests"], cwd=ROOT, capture_output=True, text=True)
        if build.returncode != 0:
            return "does not build", [], time.monotonic() - started
        if nemesis_runs:
            verdict, reports = nemesis(mutant, nemesis_runs)
            return verdict, reports, time.monotonic() - started
        if tests_filter:
            tests = subprocess.run(["timeout", "-s", "KILL", "1800", "swift", "test", "--skip-build", "--disable-xctest",
                                    "--filter", tests_filter], cwd=ROOT, capture_output=True, text=True, errors="replace")
            if tests.returncode != 0:
                keep_output(mutant, tests)
                return "caught", failing_tests(tests.stdout + tests.stderr), time.monotonic() - started
            return "NOT CAUGHT", [], time.monotonic() - started
        # What CI runs: the quick run, then the deep run (docs/testing.md); the deep run only
        # when the quick one passed. Swift Testing's time limits end a hung test; the outer
        # limit is for a hung process.
        for depth, command in (("quick", ["swift", "test", "--skip-build", "--disable-xctest"]),
                               ("deep", ["scripts/deep-test.sh", "--skip-build"])):
            tests = subprocess.run(["timeout", "-s", "KILL", "1800", *command],
                                   cwd=ROOT, capture_output=True, text=True, errors="replace")
            if tests.returncode != 0:
                keep_output(mutant, tests)
                return f"caught ({depth})", failing_tests(tests.stdout + tests.stderr), time.monotonic() - started
        return "NOT CAUGHT", [], time.monotonic() - started
    finally:
        path.write_text(original)


def restore() -> int:
    restored = 0
    for mutant in MUTANTS:
        path = ROOT / mutant.file
        text = path.read_text()
        if left_applied(mutant, text):
            path.write_text(text.replace(mutant.replace, mutant.find))
            print(f"restored {mutant.file} ({mutant.name})")
            restored += 1
    print(f"{restored} mutants undone")
    return 0


def stop_on(signum, frame):
    # Turn a polite termination into an exception, so that `run`'s `finally` puts the
    # original source back.
    raise SystemExit(128 + signum)


def main(arguments: list[str]) -> int:
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, stop_on)
    if "--restore" in arguments:
        return restore()
    if "--list" in arguments:
        for mutant in MUTANTS:
            print(f"{mutant.name:15} {mutant.guarantee}: {mutant.bug}  ({mutant.file})")
        return 0
    if "--check" in arguments:
        for mutant in MUTANTS:
            source_of(mutant)
        print(f"all {len(MUTANTS)} mutants apply to the code")
        return 0
    nemesis_runs = None
    if "--nemesis" in arguments:
        at = arguments.index("--nemesis")
        nemesis_runs = int(arguments[at + 1])
        arguments = arguments[:at] + arguments[at + 2:]
    tests_filter = None
    if "--tests" in arguments:
        at = arguments.index("--tests")
        tests_filter = arguments[at + 1]
        arguments = arguments[:at] + arguments[at + 2:]
    chosen = [m for m in MUTANTS if not arguments or m.name in arguments]
    unknown = set(arguments) - {m.name for m in MUTANTS}
    if unknown:
        raise SystemExit(f"no such mutant: {', '.join(sorted(unknown))} (see --list)")
    escaped = 0
    for mutant in chosen:
        print(f"== {mutant.name}: {mutant.bug}", flush=True)
        verdict, caught, seconds = run(mutant, nemesis_runs, tests_filter)
        escaped += verdict.startswith("NOT CAUGHT")
        if nemesis_runs:
            print(f"   {verdict} in {seconds:.0f} s", *caught, sep="\n   ", flush=True)
        else:
            print(f"   {verdict} in {seconds:.0f} s by {len(caught)} tests: {', '.join(caught)}", flush=True)
    # Leave the build matching the source again.
    subprocess.run(["swift", "build", "--build-tests"], cwd=ROOT, capture_output=True)
    print(f"{len(chosen) - escaped} of {len(chosen)} mutants caught")
    return 1 if escaped else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
