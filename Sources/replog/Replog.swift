import ArgumentParser

@main
struct Replog: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replog",
        abstract: "A replicated append-only log: one master orders every message and replicates it to secondaries.",
        discussion: """
            Start a local cluster with `replog cluster`, then append with `replog append "text" --w 2`
            (or curl -X POST http://localhost:5000/messages -d '{"message": "hi", "w": 2}').
            Every flag of master and secondary can also be set through the environment variable named in its help.
            """,
        subcommands: [
            ClusterCommand.self, MasterCommand.self, SecondaryCommand.self,
            AppendCommand.self, ListCommand.self, TailCommand.self, HealthCommand.self, DemoCommand.self, BenchCommand.self,
            EchoServerCommand.self, EchoClientCommand.self, FloorServerCommand.self,
        ])
}
