public import BSON

/// One request as the double receives it: the handshake and heartbeats arrive as OP_QUERY, everything else as OP_MSG.
public struct WireRequest: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// OP_QUERY (2004): `flags`, `fullCollectionName`, skip/return counts; answered with OP_REPLY.
        case query(flags: Int32, fullCollectionName: String, numberToSkip: Int32, numberToReturn: Int32)
        /// OP_MSG (2013): `flagBits`; answered with OP_MSG unless `moreToCome` is set.
        case message(flagBits: UInt32)
    }

    public var requestID: Int32
    public var kind: Kind
    /// The command document; OP_MSG kind-1 document sequences are merged into it as arrays, an OP_QUERY `$query`
    /// wrapper is unwrapped.
    public var command: BSONDocument

    /// OP_MSG flag bit 1: the client expects no reply.
    public var moreToCome: Bool {
        if case .message(let flags) = kind { return flags & 0x2 != 0 }
        return false
    }
}

/// A malformed frame from the client.
public struct WireError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The pure MongoDB wire codec of the double: 16-byte little-endian header (messageLength, requestID, responseTo,
/// opCode), OP_QUERY/OP_MSG decoding, OP_REPLY/OP_MSG encoding. Never consumes a partial frame.
public enum MongoWireCodec {
    public static let opReply: Int32 = 1
    public static let opQuery: Int32 = 2004
    public static let opCompressed: Int32 = 2012
    public static let opMsg: Int32 = 2013
    /// mongod's `maxMessageSizeBytes`.
    public static let maximumMessageSize = 48_000_000

    /// Decodes one frame from the front of `buffer`, removing it. Returns nil (consuming nothing) when the frame is
    /// incomplete.
    ///
    /// - Throws: ``WireError`` for a frame that can never be valid (bad length, unknown opcode, bad BSON).
    public static func decode(_ buffer: inout [UInt8]) throws(WireError) -> WireRequest? {
        guard buffer.count >= 4 else { return nil }
        let length = Int(readInt32(buffer, 0))
        guard length >= 16, length <= maximumMessageSize else { throw WireError("bad message length \(length)") }
        guard buffer.count >= length else { return nil }
        let frame = Array(buffer[0..<length])
        buffer.removeFirst(length)
        let requestID = readInt32(frame, 4)
        let opCode = readInt32(frame, 12)
        switch opCode {
        case opQuery:
            var offset = 16
            let flags = readInt32(frame, offset)
            offset += 4
            guard let nameEnd = frame[offset...].firstIndex(of: 0) else { throw WireError("unterminated namespace") }
            let name = String(decoding: frame[offset..<nameEnd], as: UTF8.self)
            offset = nameEnd + 1
            guard offset + 8 <= length else { throw WireError("truncated OP_QUERY") }
            let skip = readInt32(frame, offset)
            let count = readInt32(frame, offset + 4)
            offset += 8
            var document = try document(in: frame, at: offset)
            if let wrapped = document["$query"]?.documentValue ?? document["query"]?.documentValue,
                document.firstKey == "$query" || document.firstKey == "query"
            {
                document = wrapped
            }
            return WireRequest(
                requestID: requestID,
                kind: .query(flags: flags, fullCollectionName: name, numberToSkip: skip, numberToReturn: count),
                command: document
            )
        case opMsg:
            let flagBits = UInt32(bitPattern: readInt32(frame, 16))
            var end = length
            if flagBits & 0x1 != 0 { end -= 4 }  // checksumPresent: CRC-32C trailer, not verified
            var offset = 20
            var body: BSONDocument?
            var sequences: [(String, [BSONValue])] = []
            while offset < end {
                let kind = frame[offset]
                offset += 1
                switch kind {
                case 0:
                    let document = try document(in: frame, at: offset)
                    offset += document.byteCount
                    body = document
                case 1:
                    guard offset + 4 <= end else { throw WireError("truncated document sequence") }
                    let size = Int(readInt32(frame, offset))
                    let sectionEnd = offset + size
                    guard size >= 5, sectionEnd <= end else { throw WireError("bad document sequence size") }
                    guard let idEnd = frame[(offset + 4)..<sectionEnd].firstIndex(of: 0) else {
                        throw WireError("unterminated sequence identifier")
                    }
                    let identifier = String(decoding: frame[(offset + 4)..<idEnd], as: UTF8.self)
                    var position = idEnd + 1
                    var documents: [BSONValue] = []
                    while position < sectionEnd {
                        let document = try document(in: frame, at: position)
                        position += document.byteCount
                        documents.append(.document(document))
                    }
                    sequences.append((identifier, documents))
                    offset = sectionEnd
                default:
                    throw WireError("unknown OP_MSG section kind \(kind)")
                }
            }
            guard var command = body else { throw WireError("OP_MSG without a kind-0 section") }
            for (identifier, documents) in sequences { command.append(identifier, .array(documents)) }
            return WireRequest(requestID: requestID, kind: .message(flagBits: flagBits), command: command)
        case opCompressed:
            throw WireError("OP_COMPRESSED is not supported (the double never offers compression)")
        default:
            throw WireError("unsupported opCode \(opCode)")
        }
    }

    /// An OP_REPLY (flags 8 AwaitCapable, cursorID 0, startingFrom 0, one document).
    public static func encodeReply(requestID: Int32, responseTo: Int32, document: BSONDocument) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(36 + document.byteCount)
        appendHeader(&out, requestID: requestID, responseTo: responseTo, opCode: opReply)
        appendInt32(&out, 8)
        appendInt32(&out, 0)
        appendInt32(&out, 0)
        appendInt32(&out, 0)
        appendInt32(&out, 1)
        document.appendBytes(to: &out)
        patchLength(&out)
        return out
    }

    /// An OP_MSG with one kind-0 section.
    public static func encodeMessage(
        requestID: Int32,
        responseTo: Int32,
        flagBits: UInt32 = 0,
        document: BSONDocument
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(21 + document.byteCount)
        appendHeader(&out, requestID: requestID, responseTo: responseTo, opCode: opMsg)
        appendInt32(&out, Int32(bitPattern: flagBits))
        out.append(0)
        document.appendBytes(to: &out)
        patchLength(&out)
        return out
    }

    /// An OP_QUERY command (what libmongoc sends for the handshake); used by tests of the codec.
    public static func encodeQuery(requestID: Int32, namespace: String, flags: Int32, command: BSONDocument) -> [UInt8]
    {
        var out: [UInt8] = []
        appendHeader(&out, requestID: requestID, responseTo: 0, opCode: opQuery)
        appendInt32(&out, flags)
        out.append(contentsOf: namespace.utf8)
        out.append(0)
        appendInt32(&out, 0)
        appendInt32(&out, -1)
        command.appendBytes(to: &out)
        patchLength(&out)
        return out
    }

    private static func document(in frame: [UInt8], at offset: Int) throws(WireError) -> BSONDocument {
        guard offset + 4 <= frame.count else { throw WireError("truncated document") }
        let size = Int(readInt32(frame, offset))
        guard size >= 5, offset + size <= frame.count else { throw WireError("bad document size \(size)") }
        do {
            return try BSONDocument(bytes: Array(frame[offset..<offset + size]))
        } catch {
            throw WireError("invalid BSON: \(error)")
        }
    }

    private static func readInt32(_ bytes: [UInt8], _ offset: Int) -> Int32 {
        Int32(
            bitPattern: UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
                | UInt32(bytes[offset + 3]) << 24
        )
    }

    private static func appendInt32(_ out: inout [UInt8], _ value: Int32) {
        let v = UInt32(bitPattern: value)
        out.append(UInt8(truncatingIfNeeded: v))
        out.append(UInt8(truncatingIfNeeded: v >> 8))
        out.append(UInt8(truncatingIfNeeded: v >> 16))
        out.append(UInt8(truncatingIfNeeded: v >> 24))
    }

    private static func appendHeader(_ out: inout [UInt8], requestID: Int32, responseTo: Int32, opCode: Int32) {
        appendInt32(&out, 0)
        appendInt32(&out, requestID)
        appendInt32(&out, responseTo)
        appendInt32(&out, opCode)
    }

    private static func patchLength(_ out: inout [UInt8]) {
        let v = UInt32(out.count)
        out[0] = UInt8(truncatingIfNeeded: v)
        out[1] = UInt8(truncatingIfNeeded: v >> 8)
        out[2] = UInt8(truncatingIfNeeded: v >> 16)
        out[3] = UInt8(truncatingIfNeeded: v >> 24)
    }
}
