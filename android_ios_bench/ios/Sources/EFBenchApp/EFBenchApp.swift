// EFBench for iPhone: pick the exported micro-model folder (manifest.json + coreml/) in Files,
// choose the compute units, run, then share the LUT JSON (and the raw per-call timings) it writes
// into the app's Documents. Built only where SwiftUI exists (Package.swift); the timing itself is
// EFBenchCore's, the same as the `efbench` CLI's.
import EFBenchCore
import Foundation
import SwiftUI
import UniformTypeIdentifiers

@main
struct EFBenchApp: App {
    var body: some Scene {
        WindowGroup { BenchView() }
    }
}

@MainActor
final class BenchRun: ObservableObject {
    @Published var folder: URL?
    @Published var computeUnits: ComputeUnits = .all
    @Published var log: [String] = []
    @Published var running = false
    @Published var outputs: [URL] = []

    func start() {
        guard let folder, !running else { return }
        running = true
        log = ["measuring \(folder.lastPathComponent) with \(computeUnits.rawValue)…"]
        var configured = BenchmarkSettings()
        configured.computeUnits = computeUnits
        let settings = configured
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let output = documents.appendingPathComponent("lut_\(computeUnits.rawValue).json")
        let rawOutput = documents.appendingPathComponent("lut_\(computeUnits.rawValue).raw.json")
        Task.detached(priority: .userInitiated) {
            let scoped = folder.startAccessingSecurityScopedResource()
            defer { if scoped { folder.stopAccessingSecurityScopedResource() } }
            do {
                let manifest = try Manifest.load(folder.appendingPathComponent("manifest.json"))
                let wanted = try manifest.coreMLEntries(keys: nil)
                let lut = try measureManifest(manifest, wanted: wanted, lutURL: output, rawURL: rawOutput,
                                              settings: settings,
                                              command: "EFBench app, compute units \(settings.computeUnits.rawValue)") {
                    done, total, key, stats in
                    let line = "[\(done)/\(total)] \(key): \(String(format: "%.3f", stats.median)) ms"
                    Task { @MainActor in self.log.append(line) }
                }
                let line = "wrote \(output.lastPathComponent): \(lut.entries.count) entries, "
                    + "\(lut.referenceModels.count) reference models"
                await MainActor.run { self.outputs = [output, rawOutput]; self.log.append(line) }
            } catch {
                await MainActor.run { self.log.append("error: \(error)") }
            }
            await MainActor.run { self.running = false }
        }
    }
}

struct BenchView: View {
    @StateObject private var run = BenchRun()
    @State private var picking = false

    var body: some View {
        NavigationStack {
            Form {
                Section("Micro-models") {
                    Button(run.folder?.lastPathComponent ?? "Choose the exported folder…") { picking = true }
                    Picker("Compute units", selection: $run.computeUnits) {
                        ForEach(ComputeUnits.allCases, id: \.self) { Text($0.rawValue).tag($0) }
                    }
                    Button(run.running ? "Measuring…" : "Measure (50 warm-up + 500 runs each)") { run.start() }
                        .disabled(run.folder == nil || run.running)
                    if !run.outputs.isEmpty { ShareLink("Share LUT and raw timings", items: run.outputs) }
                }
                Section("Progress") {
                    ForEach(Array(run.log.suffix(200).enumerated()), id: \.offset) { _, line in
                        Text(line).font(.system(.caption, design: .monospaced))
                    }
                }
            }
            .navigationTitle("EFBench")
            .fileImporter(isPresented: $picking, allowedContentTypes: [.folder]) { result in
                if case .success(let url) = result { run.folder = url }
            }
        }
    }
}
