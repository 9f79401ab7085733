import Foundation
import MetanodeCore

/// File helpers with the kernel's error style. Writes are atomic (temp file, fsync, rename) so a crash never leaves a
/// half-written config or registry behind.
public enum FileIO {
    public static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    public static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// Reads a whole file, refusing anything over `limit` bytes before reading it.
    public static func read(_ path: String, limit: Int, what: String) throws(MetanodeError) -> [UInt8] {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw MetanodeError(.notFound, "cannot read \(what) \(path): no such file")
        }
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        guard size <= limit else {
            throw MetanodeError(.limitExceeded, "\(what) \(path) is \(size) bytes; the limit is \(limit)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MetanodeError(.io, "cannot read \(what) \(path)")
        }
        guard data.count <= limit else {
            throw MetanodeError(.limitExceeded, "\(what) \(path) is \(data.count) bytes; the limit is \(limit)")
        }
        return [UInt8](data)
    }

    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(MetanodeError) {
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = "\(directory)/.\((path as NSString).lastPathComponent).\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw MetanodeError(.io, "cannot create \(temporary): \(errnoText())") }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                let message = errnoText()
                close(fd)
                unlink(temporary)
                throw MetanodeError(.io, "cannot write \(temporary): \(message)")
            }
            offset += written
        }
        fchmod(fd, mode)
        guard fsync(fd) == 0 else {
            let message = errnoText()
            close(fd)
            unlink(temporary)
            throw MetanodeError(.io, "cannot sync \(temporary): \(message)")
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let message = errnoText()
            unlink(temporary)
            throw MetanodeError(.io, "cannot move \(temporary) to \(path): \(message)")
        }
    }

    public static func createDirectory(_ path: String, mode: Int = 0o755) throws(MetanodeError) {
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
        } catch {
            throw MetanodeError(.io, "cannot create directory \(path): \(error.localizedDescription)")
        }
    }

    public static func remove(_ path: String) throws(MetanodeError) {
        guard exists(path) else { return }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw MetanodeError(.io, "cannot remove \(path): \(error.localizedDescription)")
        }
    }

    public static func copyFile(_ source: String, to destination: String) throws(MetanodeError) {
        do {
            if exists(destination) { try FileManager.default.removeItem(atPath: destination) }
            try FileManager.default.copyItem(atPath: source, toPath: destination)
        } catch {
            throw MetanodeError(.io, "cannot copy \(source) to \(destination): \(error.localizedDescription)")
        }
    }

    public static func listDirectory(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    public static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return (path as NSString).standardizingPath }
        return ((FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path) as NSString)
            .standardizingPath
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
