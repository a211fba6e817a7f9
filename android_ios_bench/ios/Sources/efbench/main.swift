// efbench: time a manifest's CoreML micro-models on this Mac and write the latency LUT, or turn
// recorded per-call timings into a LUT (anywhere). See EFBenchCommand for the flags.
//
//   efbench --manifest DIR/manifest.json --lut-out lut.json [--raw-out lut.raw.json]
//           [--compute-units all|cpuOnly|cpuAndNeuralEngine|cpuAndGPU] [--warmup 50] [--runs 500]
//           [--group-size 8] [--keys k1,k2]
//   efbench --manifest DIR/manifest.json --timings lut.raw.json --lut-out lut.json
import EFBenchCore
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print(EFBenchCommand.usage)
    exit(0)
}
do {
    let command = try EFBenchCommand.parse(arguments)
    let summary = try command.run(commandLine: CommandLine.arguments.joined(separator: " ")) { line in
        print(line)
        fflush(stdout)
    }
    print(summary)
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
