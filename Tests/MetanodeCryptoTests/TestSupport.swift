import Foundation
import MetanodeCore
import Testing

/// Bytes from a hex string; test vectors are written in hex.
func hex(_ text: String) -> [UInt8] {
    precondition(text.count % 2 == 0, "odd-length hex")
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

func hexString(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

/// Expects `body` to throw a MetanodeError with `code` whose message contains `fragment`.
func expectFailure(
    _ code: MetanodeError.Code, containing fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) {
    let error = #expect(throws: MetanodeError.self, sourceLocation: sourceLocation) { try body() }
    guard let error else { return }
    #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation)
    #expect(error.message.contains(fragment), "“\(error.message)” lacks “\(fragment)”", sourceLocation: sourceLocation)
}

/// A fresh directory, removed after `body`.
func withTemporaryDirectory<R>(_ body: (String) throws -> R) throws -> R {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("metanode-crypto-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

func writeFile(_ path: String, _ text: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

func readFile(_ path: String) throws -> String {
    try String(contentsOfFile: path, encoding: .utf8)
}

func fileMode(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as! NSNumber).intValue
}

// MARK: minisign

let minisignPath = "/usr/bin/minisign"
let minisignInstalled = FileManager.default.isExecutableFile(atPath: minisignPath)

struct ProcessResult {
    var status: Int32
    var output: String
    var errorOutput: String
}

/// Runs minisign with `input` on stdin (it reads passphrases there when stdin is not a terminal).
func minisign(_ arguments: [String], input: String = "", in directory: String) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: minisignPath)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    // minisign's default key paths live under $HOME; keep it away from the real one.
    process.environment = ["HOME": directory, "PATH": "/usr/bin:/bin"]
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    stdin.fileHandleForWriting.write(Data(input.utf8))
    try stdin.fileHandleForWriting.close()
    // The outputs are a few lines, well under a pipe's buffer, so reading after exit cannot deadlock.
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus,
        output: String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
        errorOutput: String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
}

// MARK: Fixtures made by minisign 0.11

/// `minisign -G -W -p pub -s sec`; an unencrypted key with minisign's zero checksum.
enum MinisignFixture {
    static let publicKey = """
        untrusted comment: minisign public key 11143A3155092352
        RWRSIwlVMToUEfSuB3C7ZIIicODBnKG60QURMyjIouqBmJBxDzy64pHp

        """
    static let publicKeyID: [UInt8] = [0x52, 0x23, 0x09, 0x55, 0x31, 0x3A, 0x14, 0x11]
    static let secretKey = """
        untrusted comment: minisign encrypted secret key
        RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAUiMJVTE6FBFnfwz9ubE4Pp9AkWCfFM6/JXwmdNVCwGljeHk18rp0vPSuB3C7ZIIicODBnKG60QURMyjIouqBmJBxDzy64pHpAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=

        """
    static let message = Array("hello\n".utf8)
    /// `minisign -S -s sec -m f -t "tc here"`
    static let prehashedSignature = """
        untrusted comment: signature from minisign secret key
        RURSIwlVMToUEaq929fNe23aLGW8H0lCFm6sxSHprxkinKyMaPNKQ1/7z/Entp+penU7IhqKfF7JUKVekuP3vbBBBnTe7NK/nQc=
        trusted comment: tc here
        T0CtC9Y/UHrQE1ckmm1qzzLcY+f22NT3tua6UtG3LqBSRG5ntPVAd0IxZ1tEyR41fEbHakQKK01xMil7UDYfCw==

        """
    /// `minisign -S -l -s sec -m f -x f.leg`
    static let legacySignature = """
        untrusted comment: signature from minisign secret key
        RWRSIwlVMToUEeeQ7J7YVzA9nL6nzHx6tqHi1R1lnpsvYW26uMU/DaGmKvgu2IYQYfwzXTO/4Hdd237m6PNF8OdEFGotwi5M4Q0=
        trusted comment: timestamp:1795639737\tfile:f
        WVIu8JaSjGSWOao7620UJuWNGfbHSBrlEiBqkY9OeXleDS8OZV/2QjZ4ii7orq93t0GFc5anqEyGXDuvW/uzBA==

        """
}
