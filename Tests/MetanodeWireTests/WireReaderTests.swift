import MetanodeWire
import Testing

@Suite("Wire reader")
struct WireReaderTests {
    @Test("a u16-length string is read where it lies and the read goes on after it; too long, cut short and bad UTF-8 are refused, naming the field")
    func string16() throws {
        var writer = WireWriter()
        writer.string16("bpci/transfer")
        writer.string16("")
        writer.string16("né")
        writer.u8(7)
        var reader = WireReader(writer.bytes, context: "test")
        #expect(try reader.string16("kind", max: 64) == "bpci/transfer")
        #expect(try reader.string16("empty", max: 64) == "")
        #expect(try reader.string16("accented", max: 3) == "né")
        #expect(try reader.u8("after") == 7)
        try reader.finish()

        var long = WireReader([0, 5] + Array("hello".utf8), context: "test")
        #expect(throws: WireError(.tooLong, "test.kind is 5 bytes; at most 4")) { try long.string16("kind", max: 4) }
        var short = WireReader([0, 5] + Array("hel".utf8), context: "test")
        #expect(throws: WireError(.truncated, "test ends inside kind: needs 5 byte(s), 3 left")) {
            try short.string16("kind", max: 64)
        }
        var invalid = WireReader([0, 2, 0xC3, 0x28], context: "test")
        #expect(throws: WireError(.invalidValue, "test.kind is not valid UTF-8")) { try invalid.string16("kind", max: 64) }
    }
}
