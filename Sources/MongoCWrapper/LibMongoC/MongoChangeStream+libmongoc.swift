public import BSON
internal import CLibMongoC
import Dispatch

/// A `mongoc_change_stream_t` pointer, touched only on its client's queue and destroyed exactly once (by
/// ``MongoClient/changeStreamClose(_:)``, the detached close, or the client's own close).
final class ChangeStreamBox: @unchecked Sendable {
    let pointer: OpaquePointer
    init(pointer: OpaquePointer) { self.pointer = pointer }
}

extension MongoClient {
    /// Opens a change stream; libmongoc sends the `aggregate` now (on the client's queue), so a refused stream
    /// (40573 on a standalone, 13, 286, 260, …) throws here.
    ///
    /// - Parameter pipeline: stages appended after `$changeStream` (e.g. a `$match`).
    /// - Throws: ``MongoError``.
    public func watch(
        _ scope: ChangeStreamScope,
        pipeline: [BSONDocument] = [],
        options: ChangeStreamOptions = ChangeStreamOptions()
    ) async throws -> MongoChangeStream {
        let secrets = self.secrets
        let pipelineDocument: BSONDocument = ["pipeline": .array(pipeline.map { .document($0) })]
        let optionsDocument = options.document
        let box = try await withClient { client -> ChangeStreamBox in
            let stream: OpaquePointer = pipelineDocument.withBSONPointer { pipelinePointer in
                optionsDocument.withBSONPointer { optionsPointer in
                    switch scope {
                    case .cluster:
                        return mongoc_client_watch(client, pipelinePointer, optionsPointer)
                    case .database(let name):
                        let database = mongoc_client_get_database(client, name)
                        defer { mongoc_database_destroy(database) }
                        return mongoc_database_watch(database, pipelinePointer, optionsPointer)
                    case .collection(let databaseName, let collectionName):
                        let collection = mongoc_client_get_collection(client, databaseName, collectionName)
                        defer { mongoc_collection_destroy(collection) }
                        return mongoc_collection_watch(collection, pipelinePointer, optionsPointer)
                    }
                }
            }
            // libmongoc always returns a stream; a failed aggregate is reported through its error document.
            var error = bson_error_t()
            var errorDocument: OpaquePointer?
            if mongoc_change_stream_error_document(stream, &error, &errorDocument) {
                let reply = errorDocument.flatMap { try? BSONDocument(copying: $0) }
                let failure = MongoError.from(&error, reply: reply.flatMap { $0.isEmpty ? nil : $0 }, secrets: secrets)
                mongoc_change_stream_destroy(stream)
                throw failure
            }
            let box = ChangeStreamBox(pointer: stream)
            self.openStreams[ObjectIdentifier(box)] = box
            return box
        }
        return MongoChangeStream(client: self, box: box)
    }

    func changeStreamNext(_ box: ChangeStreamBox) async throws -> BSONDocument? {
        let secrets = self.secrets
        return try await withClient { _ in
            guard self.openStreams[ObjectIdentifier(box)] != nil else {
                throw MongoError(code: .closed, message: "the change stream is closed")
            }
            var document: OpaquePointer?
            if mongoc_change_stream_next(box.pointer, &document), let document {
                // Borrowed until the next mongoc_change_stream_next: copy now.
                do { return try BSONDocument(copying: document) } catch {
                    throw MongoError(code: .invalidBSON, message: "\(error)")
                }
            }
            var error = bson_error_t()
            var errorDocument: OpaquePointer?
            if mongoc_change_stream_error_document(box.pointer, &error, &errorDocument) {
                let reply = errorDocument.flatMap { try? BSONDocument(copying: $0) }
                throw MongoError.from(&error, reply: reply.flatMap { $0.isEmpty ? nil : $0 }, secrets: secrets)
            }
            return nil
        }
    }

    func changeStreamResumeToken(_ box: ChangeStreamBox) async throws -> BSONDocument? {
        try await withClient { _ -> BSONDocument? in
            guard self.openStreams[ObjectIdentifier(box)] != nil else {
                throw MongoError(code: .closed, message: "the change stream is closed")
            }
            // Owned by the stream; copied before the next call.
            guard let token = mongoc_change_stream_get_resume_token(box.pointer) else { return nil }
            do { return try BSONDocument(copying: token) } catch {
                throw MongoError(code: .invalidBSON, message: "\(error)")
            }
        }
    }

    func changeStreamClose(_ box: ChangeStreamBox) async {
        _ = try? await withClient { _ in
            if self.openStreams.removeValue(forKey: ObjectIdentifier(box)) != nil {
                mongoc_change_stream_destroy(box.pointer)
            }
        }
    }

    func changeStreamCloseDetached(_ box: ChangeStreamBox) {
        queue.async {
            if self.openStreams.removeValue(forKey: ObjectIdentifier(box)) != nil, self.hasClient {
                mongoc_change_stream_destroy(box.pointer)
            }
        }
    }
}
