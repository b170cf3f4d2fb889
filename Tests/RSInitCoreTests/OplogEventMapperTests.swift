import BSON
import MongoCWrapper
import RSInitCore
import Testing

func ts(_ t: UInt32, _ i: UInt32 = 0) -> BSONTimestamp { BSONTimestamp(seconds: t, increment: i) }

func entry(_ json: String) -> BSONDocument { try! BSONDocument(extendedJSON: json) }

func mapAll(
    _ documents: [BSONDocument],
    configuration: OplogEventMapper.Configuration = .init(),
    start: BSONTimestamp? = nil
) -> (events: [ChangeEvent], mapper: OplogEventMapper, dispositions: [OplogEventMapper.Disposition]) {
    var mapper = OplogEventMapper(configuration: configuration, startPosition: start)
    var events: [ChangeEvent] = []
    let dispositions = documents.map { mapper.map($0, into: &events) }
    return (events, mapper, dispositions)
}

@Suite struct OplogEventMapperTests {
    // §9f P01–P03
    @Test func parserVectors() {
        let (events, _, _) = mapAll([
            entry(#"{"ts":{"$timestamp":{"t":1234,"i":0}},"op":"i","ns":"foo.Bar","o":{"_id":"someid","foo":"bar"}}"#),
            entry(
                #"{"ts":{"$timestamp":{"t":1234,"i":1}},"op":"u","ns":"foo.Bar","o":{"new":"data"},"o2":{"_id":"updateid"}}"#
            ),
            entry(#"{"ts":{"$timestamp":{"t":1234,"i":2}},"op":"d","ns":"foo.Bar","o":{"_id":"someid"}}"#),
        ])
        #expect(events.map(\.kind) == [.insert, .replace, .delete])
        #expect(events.map(\.documentID) == ["someid", "updateid", "someid"])
        #expect(
            events.allSatisfy {
                $0.namespace == Namespace(database: "foo", collection: "Bar") && $0.transactionIndex == 0
            }
        )
        #expect(events.map(\.changedFields) == [["_id", "foo"], ["new"], []])
    }

    /// Inserts and replacements of one shape share their changed-fields array; another shape gets its own fields.
    @Test func changedFieldsOfSuccessiveShapes() {
        let (events, _, _) = mapAll([
            entry(#"{"ts":{"$timestamp":{"t":1,"i":1}},"op":"i","ns":"foo.Bar","o":{"_id":"a","x":1}}"#),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":2}},"op":"i","ns":"foo.Bar","o":{"_id":"b","x":2}}"#),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":3}},"op":"i","ns":"foo.Bar","o":{"_id":"c","y":2}}"#),
            entry(
                #"{"ts":{"$timestamp":{"t":1,"i":4}},"op":"u","ns":"foo.Bar","o":{"_id":"c","y":3},"o2":{"_id":"c"}}"#
            ),
            entry(
                #"{"ts":{"$timestamp":{"t":1,"i":5}},"op":"u","ns":"foo.Bar","o":{"$v":2,"diff":{"u":{"z":1}}},"o2":{"_id":"c"}}"#
            ),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":6}},"op":"i","ns":"foo.Bar","o":{"_id":"d","x":1,"y":1}}"#),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":7}},"op":"i","ns":"foo.Bar","o":{"_id":"e","x":1}}"#),
        ])
        #expect(
            events.map(\.changedFields) == [
                ["_id", "x"], ["_id", "x"], ["_id", "y"], ["_id", "y"], ["z"], ["_id", "x", "y"], ["_id", "x"],
            ]
        )
    }

    // §9f P05: nested applyOps, outer ts, running index
    @Test func nestedApplyOps() {
        let (events, mapper, dispositions) = mapAll([
            entry(
                #"""
                {"ts":{"$timestamp":{"t":1234,"i":0}},"wall":{"$date":"2020-01-01T00:00:00Z"},"op":"c","ns":"admin.$cmd","o":{"applyOps":[
                  {"op":"c","ns":"admin.$cmd","o":{"applyOps":[{"op":"i","ns":"foo.Bar","o":{"_id":"id1","foo":"baz"}}]}},
                  {"op":"i","ns":"foo.Bar","o":{"_id":"id1","foo":"bar"}},
                  {"op":"u","ns":"foo.Bar","o":{"foo":"quux"},"o2":{"_id":"id2"}},
                  {"op":"d","ns":"foo.Bar","o":{"_id":"id3"}}]}}
                """#
            )
        ])
        #expect(dispositions == [.emitted(4)])
        #expect(events.map(\.kind) == [.insert, .insert, .replace, .delete])
        #expect(events.map(\.documentID) == ["id1", "id1", "id2", "id3"])
        #expect(events.map(\.transactionIndex) == [0, 1, 2, 3])
        #expect(events.allSatisfy { $0.timestamp == ts(1234) && $0.wallTime == 1_577_836_800_000 })
        #expect(mapper.resumePosition == ts(1234))
    }

    // §9e A08
    @Test func transactionWithInsertAndDiffUpdate() {
        let (events, _, _) = mapAll([
            entry(
                #"""
                {"ts":{"$timestamp":{"t":9,"i":1}},"op":"c","ns":"admin.$cmd","o":{"applyOps":[
                  {"op":"i","ns":"test.Tx","o":{"_id":"foo","bar":"baz"}},
                  {"op":"u","ns":"test.Tx","o2":{"_id":"foo"},"o":{"$v":2,"diff":{"u":{"bar":"quux"}}}}]}}
                """#
            )
        ])
        #expect(events.map(\.kind) == [.insert, .update])
        #expect(events.map(\.changedFields) == [["_id", "bar"], ["bar"]])
        #expect(events.map(\.transactionIndex) == [0, 1])
    }

    // §9f P06
    @Test func namespaceParsing() {
        #expect(Namespace("foo.bar") == Namespace(database: "foo", collection: "bar"))
        #expect(Namespace("foo.system.indexes") == Namespace(database: "foo", collection: "system.indexes"))
        #expect(Namespace("foo") == Namespace(database: "foo", collection: ""))
        #expect(Namespace("") == Namespace(database: "", collection: ""))
        #expect(Namespace("x.a.b").collection == "a.b")
    }

    // §9b V07/V08, §5: what is not published — but every entry advances the position.
    @Test func skipsAdvanceThePosition() {
        let (events, mapper, dispositions) = mapAll([
            entry(#"{"ts":{"$timestamp":{"t":1,"i":1}},"op":"n","ns":"","o":{"msg":"periodic noop"}}"#),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":2}},"op":"i","ns":"foo.system.indexes","o":{"_id":1}}"#),
            entry(
                #"{"ts":{"$timestamp":{"t":1,"i":3}},"op":"d","ns":"config.transactions","o":{"_id":{"id":{"$binary":{"base64":"AAAAAAAAAAAAAAAAAAAAAA==","subType":"04"}}}}}"#
            ),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":4}},"op":"i","ns":"local.x","o":{"_id":1}}"#),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":5}},"op":"i","ns":"admin.system.keys","o":{"_id":1}}"#),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":6}},"op":"i","ns":"admin.users","o":{"_id":1}}"#),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":7}},"op":"i","ns":"app.c","o":{"_id":1},"fromMigrate":true}"#),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":8}},"op":"c","ns":"app.$cmd","o":{"createIndexes":"c","v":2}}"#),
            entry(#"{"ts":{"$timestamp":{"t":1,"i":9}},"op":"c","ns":"config.$cmd","o":{"create":"transactions"}}"#),
        ])
        #expect(events.isEmpty)
        #expect(
            dispositions == [
                .skipped(.noop), .skipped(.internalNamespace), .skipped(.internalNamespace),
                .skipped(.internalNamespace),
                .skipped(.internalNamespace), .skipped(.internalNamespace), .skipped(.fromMigrate),
                .skipped(.otherCommand),
                .skipped(.internalNamespace),
            ]
        )
        #expect(mapper.lastRead == ts(1, 9))
        #expect(mapper.resumePosition == ts(1, 9))
    }

    // §8 G6: commands become events
    @Test func commandsBecomeEvents() {
        let (events, _, _) = mapAll([
            entry(#"{"ts":{"$timestamp":{"t":2,"i":1}},"op":"c","ns":"tests.$cmd","o":{"drop":"Foo"}}"#),
            entry(#"{"ts":{"$timestamp":{"t":2,"i":2}},"op":"c","ns":"tests.$cmd","o":{"dropDatabase":1}}"#),
            entry(
                #"{"ts":{"$timestamp":{"t":2,"i":3}},"op":"c","ns":"admin.$cmd","o":{"renameCollection":"tests.a","to":"tests.b","stayTemp":false}}"#
            ),
            entry(
                #"{"ts":{"$timestamp":{"t":2,"i":4}},"op":"c","ns":"tests.$cmd","o":{"create":"Bar","idIndex":{"v":2}}}"#
            ),
        ])
        #expect(events.map { $0.command?.name } == ["drop", "dropDatabase", "renameCollection", "create"])
        #expect(events.map(\.namespace.description) == ["tests.Foo", "tests", "tests.a", "tests.Bar"])
        #expect(events[2].command?.renamedTo == Namespace(database: "tests", collection: "b"))
        #expect(events.allSatisfy { $0.kind == .command && $0.documentID == nil })
    }

    @Test func partialTransactionChainsEmitOnlyWhenCommitted() {
        let lsid =
            #""lsid":{"id":{"$binary":{"base64":"AQEBAQEBAQEBAQEBAQEBAQ==","subType":"04"}}},"txnNumber":{"$numberLong":"7"}"#
        let documents = [
            entry(#"{"ts":{"$timestamp":{"t":5,"i":1}},"op":"i","ns":"app.c","o":{"_id":"before"}}"#),
            entry(
                #"{"ts":{"$timestamp":{"t":5,"i":2}},"op":"c","ns":"admin.$cmd",\#(lsid),"o":{"applyOps":[{"op":"i","ns":"app.c","o":{"_id":"t1"}}],"partialTxn":true}}"#
            ),
            entry(#"{"ts":{"$timestamp":{"t":5,"i":3}},"op":"i","ns":"app.c","o":{"_id":"interleaved"}}"#),
            entry(
                #"{"ts":{"$timestamp":{"t":5,"i":4}},"op":"c","ns":"admin.$cmd",\#(lsid),"o":{"applyOps":[{"op":"i","ns":"app.c","o":{"_id":"t2"}}],"partialTxn":true}}"#
            ),
            entry(
                #"{"ts":{"$timestamp":{"t":5,"i":5}},"op":"c","ns":"admin.$cmd",\#(lsid),"o":{"applyOps":[{"op":"d","ns":"app.c","o":{"_id":"t3"}}],"count":3}}"#
            ),
        ]
        var mapper = OplogEventMapper(configuration: .init(), startPosition: ts(5, 0))
        var events: [ChangeEvent] = []
        var positions: [BSONTimestamp?] = []
        for document in documents {
            _ = mapper.map(document, into: &events)
            positions.append(mapper.resumePosition)
        }
        #expect(events.map(\.documentID) == ["before", "interleaved", "t1", "t2", "t3"])
        #expect(events.suffix(3).map(\.transactionIndex) == [0, 1, 2])
        #expect(events.suffix(3).allSatisfy { $0.timestamp == ts(5, 5) })
        // The resume position stays before the chain's first entry until it commits.
        #expect(positions == [ts(5, 1), ts(5, 1), ts(5, 1), ts(5, 1), ts(5, 5)])
    }

    @Test func preparedTransactionsCommitOrAbort() {
        let lsidA =
            #""lsid":{"id":{"$binary":{"base64":"AgICAgICAgICAgICAgICAg==","subType":"04"}}},"txnNumber":{"$numberLong":"1"}"#
        let lsidB =
            #""lsid":{"id":{"$binary":{"base64":"AwMDAwMDAwMDAwMDAwMDAw==","subType":"04"}}},"txnNumber":{"$numberLong":"1"}"#
        let (events, mapper, dispositions) = mapAll(
            [
                entry(
                    #"{"ts":{"$timestamp":{"t":6,"i":1}},"op":"c","ns":"admin.$cmd",\#(lsidA),"o":{"applyOps":[{"op":"i","ns":"app.c","o":{"_id":"a"}}],"prepare":true}}"#
                ),
                entry(
                    #"{"ts":{"$timestamp":{"t":6,"i":2}},"op":"c","ns":"admin.$cmd",\#(lsidB),"o":{"applyOps":[{"op":"i","ns":"app.c","o":{"_id":"b"}}],"prepare":true}}"#
                ),
                entry(
                    #"{"ts":{"$timestamp":{"t":6,"i":3}},"op":"c","ns":"admin.$cmd",\#(lsidB),"o":{"abortTransaction":1}}"#
                ),
                entry(
                    #"{"ts":{"$timestamp":{"t":6,"i":4}},"op":"c","ns":"admin.$cmd",\#(lsidA),"o":{"commitTransaction":1,"commitTimestamp":{"$timestamp":{"t":6,"i":1}}}}"#
                ),
            ],
            start: ts(6, 0)
        )
        #expect(
            dispositions == [
                .skipped(.pendingTransaction), .skipped(.pendingTransaction), .skipped(.abortedTransaction),
                .emitted(1),
            ]
        )
        #expect(events.map(\.documentID) == ["a"])
        #expect(events.first?.timestamp == ts(6, 4))
        #expect(!mapper.hasPendingTransactions)
        #expect(mapper.resumePosition == ts(6, 4))
    }

    @Test func documentIDsOfEveryBSONTypeAreCarriedExactly() {
        let ids: [BSONValue] = [
            "someid", "", "-x", "~y", "{z", "56e1fc72e0c917e9c4714161",
            .objectID(BSONObjectID(hex: "56e1fc72e0c917e9c4714161")!),
            .int32(1234), .int64(.max), .double(-0.0), .double(.nan), .bool(true), .null, .datetime(-1),
            .binary(BSONBinary(subtype: 4, data: Array(repeating: 1, count: 16))),
            .decimal128(BSONDecimal128(low: 15, high: 0x303E_0000_0000_0000)),
            .timestamp(ts(1, 2)), .document(["a": 1, "b": [1, 2]]), .array([1, "x"]), .minKey, .maxKey,
            .regex(BSONRegularExpression(pattern: "a", options: "i")), .symbol("s"), .javascript("f()"),
        ]
        var documents: [BSONDocument] = []
        for (index, id) in ids.enumerated() {
            documents.append([
                "ts": .timestamp(ts(7, UInt32(index))), "op": "u", "ns": "app.c", "o2": ["_id": id],
                "o": ["$v": 2, "diff": ["u": ["x": 1]]],
            ])
        }
        let (events, _, _) = mapAll(documents)
        #expect(events.count == ids.count)
        for (event, id) in zip(events, ids) { #expect(event.documentID == id) }
    }

    @Test func fullDocumentsOnRequest() {
        let documents = [
            entry(#"{"ts":{"$timestamp":{"t":8,"i":1}},"op":"i","ns":"app.c","o":{"_id":1,"a":2}}"#),
            entry(#"{"ts":{"$timestamp":{"t":8,"i":2}},"op":"u","ns":"app.c","o2":{"_id":1},"o":{"_id":1,"b":3}}"#),
            entry(
                #"{"ts":{"$timestamp":{"t":8,"i":3}},"op":"u","ns":"app.c","o2":{"_id":1},"o":{"$v":2,"diff":{"u":{"b":4}}}}"#
            ),
        ]
        let (with, _, _) = mapAll(documents, configuration: .init(includeFullDocuments: true))
        #expect(with.map { $0.fullDocument != nil } == [true, true, false])
        let (without, _, _) = mapAll(documents)
        #expect(without.allSatisfy { $0.fullDocument == nil })
    }

    @Test func namespaceFilters() {
        let filter = NamespaceFilter(include: ["app", "shop.orders", "tenant_*.items"], exclude: ["app.secret*"])
        #expect(filter.includes(Namespace("app.users")))
        #expect(filter.includes(Namespace("app.a.b")))
        #expect(!filter.includes(Namespace("app.secrets")))
        #expect(filter.includes(Namespace("shop.orders")))
        #expect(!filter.includes(Namespace("shop.carts")))
        #expect(filter.includes(Namespace("tenant_42.items")))
        #expect(!filter.includes(Namespace("tenant_42.other")))
        #expect(filter.includes(Namespace(database: "shop", collection: "")))  // dropDatabase of an included db
        #expect(!filter.includes(Namespace(database: "other", collection: "")))
        #expect(NamespaceFilter.everything.includes(Namespace("x.y")))
        #expect(NamespaceFilter(exclude: ["*.logs"]).includes(Namespace("a.b")))
        #expect(!NamespaceFilter(exclude: ["*.logs"]).includes(Namespace("a.logs")))
        #expect(filter.serverFilter == ["app", "shop", "tenant_*"])
        // Filtered transaction operations keep their indexes (stable dedupe keys).
        let (events, _, _) = mapAll(
            [
                entry(
                    #"{"ts":{"$timestamp":{"t":3,"i":1}},"op":"c","ns":"admin.$cmd","o":{"applyOps":[{"op":"i","ns":"shop.carts","o":{"_id":1}},{"op":"i","ns":"shop.orders","o":{"_id":2}}]}}"#
                )
            ],
            configuration: .init(filter: filter)
        )
        #expect(events.map(\.transactionIndex) == [1])
    }
}
