public import BSON
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One reply as ``RawWireClient/receiveFrame()`` reads it.
public struct WireReplyFrame: Sendable {
    public var opCode: Int32
    public var requestID: Int32
    public var responseTo: Int32
    /// OP_MSG flag bits (0 for OP_REPLY); `moreToCome` is 0x2.
    public var flagBits: UInt32
    public var document: BSONDocument

    public var moreToCome: Bool { flagBits & 0x2 != 0 }
}

/// A minimal blocking wire client for tests that must send what libmongoc never sends (OP_MSG without
/// `$readPreference`, `moreToCome`, document sequences, odd command-name casing).
public final class RawWireClient {
    private let fd: Int32
    private var requestID: Int32 = 1
    private var buffer: [UInt8] = []

    public init(port: UInt16) throws {
        guard let fd = connectLoopback(port: port) else { throw FakeMongodError("connect failed: errno \(errno)") }
        self.fd = fd
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    /// Sends raw bytes.
    public func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Sends an OP_MSG (optionally with a kind-1 document sequence) and returns the request ID used.
    @discardableResult
    public func sendMessage(
        _ command: BSONDocument,
        flagBits: UInt32 = 0,
        sequence: (String, [BSONDocument])? = nil
    ) -> Int32 {
        requestID += 1
        var bytes = MongoWireCodec.encodeMessage(
            requestID: requestID,
            responseTo: 0,
            flagBits: flagBits,
            document: command
        )
        if let (identifier, documents) = sequence {
            var section: [UInt8] = [1, 0, 0, 0, 0]
            section += Array(identifier.utf8) + [0]
            for document in documents { section += document.bytes }
            let size = UInt32(section.count - 1)
            section[1] = UInt8(size & 0xFF)
            section[2] = UInt8(size >> 8 & 0xFF)
            section[3] = UInt8(size >> 16 & 0xFF)
            section[4] = UInt8(size >> 24)
            bytes += section
            let total = UInt32(bytes.count)
            bytes[0] = UInt8(total & 0xFF)
            bytes[1] = UInt8(total >> 8 & 0xFF)
            bytes[2] = UInt8(total >> 16 & 0xFF)
            bytes[3] = UInt8(total >> 24)
        }
        send(bytes)
        return requestID
    }

    /// Sends an OP_QUERY command on `admin.$cmd` and returns the request ID used.
    @discardableResult
    public func sendQuery(_ command: BSONDocument, flags: Int32 = 0) -> Int32 {
        requestID += 1
        send(MongoWireCodec.encodeQuery(requestID: requestID, namespace: "admin.$cmd", flags: flags, command: command))
        return requestID
    }

    /// Reads one reply frame: its opcode, responseTo and document. nil on EOF or timeout.
    public func receive() -> (opCode: Int32, responseTo: Int32, document: BSONDocument)? {
        receiveFrame().map { ($0.opCode, $0.responseTo, $0.document) }
    }

    /// One reply frame with its header fields and, for OP_MSG, its flag bits (`moreToCome` = 0x2). nil on EOF or
    /// timeout (5 s).
    public func receiveFrame() -> WireReplyFrame? {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            if buffer.count >= 16 {
                let length = Int(le32(buffer, 0))
                guard length >= 16 else { return nil }
                if buffer.count >= length {
                    let frame = Array(buffer[0..<length])
                    buffer.removeFirst(length)
                    let opCode = le32(frame, 12)
                    let bodyOffset = opCode == MongoWireCodec.opReply ? 36 : 21
                    guard frame.count > bodyOffset,
                        let document = try? BSONDocument(bytes: Array(frame[bodyOffset...]))
                    else { return nil }
                    let flags = opCode == MongoWireCodec.opMsg ? UInt32(bitPattern: le32(frame, 16)) : 0
                    return WireReplyFrame(
                        opCode: opCode,
                        requestID: le32(frame, 4),
                        responseTo: le32(frame, 8),
                        flagBits: flags,
                        document: document
                    )
                }
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            buffer += chunk[0..<n]
        }
    }

    /// Sends a command as OP_MSG and waits for its reply document.
    public func command(_ command: BSONDocument) -> BSONDocument? {
        sendMessage(command)
        return receive()?.document
    }

    private func le32(_ bytes: [UInt8], _ offset: Int) -> Int32 {
        Int32(
            bitPattern: UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
                | UInt32(bytes[offset + 3]) << 24
        )
    }
}
