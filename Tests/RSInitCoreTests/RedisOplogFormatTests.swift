import BSON
import MongoCWrapper
import RSInitCore
import Testing

func event(_ kind: ChangeEvent.Kind, _ id: BSONValue?, _ fields: [String], ns: String = "foo.bar") -> ChangeEvent {
    ChangeEvent(
        kind: kind,
        namespace: Namespace(ns),
        documentID: id,
        changedFields: fields,
        timestamp: BSONTimestamp(seconds: 1234, increment: 0),
        transactionIndex: 0,
        wallTime: nil,
        fullDocument: nil,
        command: nil
    )
}

@Suite struct RedisOplogFormatTests {
    // §9b V01–V05 (through the mapper, as published)
    @Test func processorVectors() {
        let cases: [(String, [String], String)] = [
            (
                #"{"op":"i","ns":"foo.bar","o":{"_id":"someid","some":"field"}}"#, ["foo.bar", "foo.bar::someid"],
                #"{"e":"i","d":{"_id":"someid"},"f":["_id","some"]}"#
            ),
            (
                #"{"op":"u","ns":"foo.bar","o2":{"_id":"someid"},"o":{"some":"field","new":"field"}}"#,
                ["foo.bar", "foo.bar::someid"],
                #"{"e":"u","d":{"_id":"someid"},"f":["some","new"]}"#
            ),
            (
                #"{"op":"u","ns":"foo.bar","o2":{"_id":"someid"},"o":{"$v":"1.2.3","$set":{"a":"foo","b":"foo"},"$unset":{"c":"foo"}}}"#,
                ["foo.bar", "foo.bar::someid"], #"{"e":"u","d":{"_id":"someid"},"f":["a","b","c"]}"#
            ),
            (
                #"{"op":"d","ns":"foo.bar","o":{"_id":"someid"}}"#, ["foo.bar", "foo.bar::someid"],
                #"{"e":"r","d":{"_id":"someid"},"f":[]}"#
            ),
            (
                #"{"op":"i","ns":"foo.bar","o":{"_id":{"$oid":"deadbeefdeadbeefdeadbeef"},"some":"field"}}"#,
                ["foo.bar", "foo.bar::deadbeefdeadbeefdeadbeef"],
                #"{"e":"i","d":{"_id":{"$type":"oid","$value":"deadbeefdeadbeefdeadbeef"}},"f":["_id","some"]}"#
            ),
            // V06 (G5): a numeric id is published, on Meteor's "~<JSON>" channel.
            (
                #"{"op":"i","ns":"foo.bar","o":{"_id":1234,"some":"field"}}"#, ["foo.bar", "foo.bar::~1234"],
                #"{"e":"i","d":{"_id":1234},"f":["_id","some"]}"#
            ),
        ]
        for (json, channels, message) in cases {
            var document = try! BSONDocument(extendedJSON: json)
            document.append("ts", .timestamp(BSONTimestamp(seconds: 1234, increment: 0)))
            var mapper = OplogEventMapper(configuration: .init(), startPosition: nil)
            var events: [ChangeEvent] = []
            _ = mapper.map(document, into: &events)
            let published = try! #require(events.first)
            #expect(RedisOplogFormat.channels(for: published, prefix: "") == channels)
            #expect(RedisOplogFormat.message(for: published) == message)
        }
    }

    // §1.3 and §8 G4/G5
    @Test(
        arguments: [
            (BSONValue.objectID(BSONObjectID(hex: "deadbeefdeadbeefdeadbeef")!), "deadbeefdeadbeefdeadbeef"),
            (.string(""), ""), (.string("-x"), "--x"), (.string("~y"), "-~y"), (.string("{z"), "-{z"),
            (.string("deadbeefdeadbeefdeadbeef"), "-deadbeefdeadbeefdeadbeef"),
            (.string("DEADBEEFDEADBEEFDEADBEEF"), "DEADBEEFDEADBEEFDEADBEEF"),
            (.string("Kd8sJ2kQ9mNpLx4Rt"), "Kd8sJ2kQ9mNpLx4Rt"),
            (.int32(1234), "~1234"), (.int64(-5), "~-5"), (.double(1.5), "~1.5"), (.double(100), "~100"),
            (.bool(true), "~true"),
            (.null, "~null"), (.undefined, "-"),
        ] as [(BSONValue, String)]
    )
    func idStringify(_ id: BSONValue, _ expected: String) {
        #expect(RedisOplogFormat.idStringify(id) == expected)
    }

    @Test func idsMeteorCannotStringifyGoToTheCollectionChannelOnly() {
        for id: BSONValue in [
            .document(["a": 1]), .array([1]), .datetime(0), .binary(BSONBinary(subtype: 4, data: [1])),
        ] {
            #expect(RedisOplogFormat.idStringify(id) == nil)
            #expect(RedisOplogFormat.channels(for: event(.insert, id, ["_id"]), prefix: "p.") == ["p.foo.bar"])
        }
    }

    @Test func meteorEJSONForIds() {
        #expect(RedisOplogFormat.meteorEJSON(.datetime(-1)) == #"{"$date":-1}"#)
        #expect(
            RedisOplogFormat.meteorEJSON(.binary(BSONBinary(subtype: 0, data: [0xFF, 0xFF]))) == #"{"$binary":"//8="}"#
        )
        #expect(RedisOplogFormat.meteorEJSON(.double(.nan)) == #"{"$InfNaN":0}"#)
        #expect(RedisOplogFormat.meteorEJSON(.double(-.infinity)) == #"{"$InfNaN":-1}"#)
        #expect(
            RedisOplogFormat.meteorEJSON(.decimal128(BSONDecimal128(string: "1.5")!))
                == #"{"$type":"Decimal","$value":"1.5"}"#
        )
        #expect(RedisOplogFormat.meteorEJSON(["$date": 1]) == #"{"$escape":{"$date":1}}"#)
        #expect(RedisOplogFormat.meteorEJSON(["a": [1, "x\"y\n"]]) == #"{"a":[1,"x\"y\n"]}"#)
        #expect(RedisOplogFormat.meteorEJSON(.string("\u{01}")) == #""\u0001""#)
    }

    @Test func prefixAndCommands() {
        #expect(
            RedisOplogFormat.channels(for: event(.delete, "a", []), prefix: "tests.") == [
                "tests.foo.bar", "tests.foo.bar::a",
            ]
        )
        var rename = event(.command, nil, [], ns: "app.old")
        rename.command = ChangeEvent.Command(name: "renameCollection", renamedTo: Namespace("app.new"))
        #expect(
            RedisOplogFormat.commandMessage(for: rename)
                == #"{"c":"renameCollection","db":"app","coll":"old","to":"app.new","ts":{"t":1234,"i":0}}"#
        )
    }
}
