import MetanodeCore
import Testing

@Suite struct HexTests {
    @Test func encodesLowercaseTwoDigitsPerByte() {
        #expect(Hex.encode([0x00, 0x0f, 0xab, 0xff]) == "000fabff")
        #expect(Hex.encode([]) == "")
    }

    @Test func decodesEitherCase() throws {
        #expect(try Hex.decode("00fFaB10") == [0x00, 0xff, 0xab, 0x10])
        #expect(try Hex.decode("") == [])
    }

    @Test func decodeRefusesAnOddNumberOfDigits() {
        expectFailure(.invalidArgument, "odd number of digits (3)") { () throws(MetanodeError) in try Hex.decode("abc")
        }
    }

    @Test func decodeNamesTheBadDigitAndItsPosition() {
        expectFailure(.invalidArgument, "invalid hex digit 'g' at position 3") { () throws(MetanodeError) in
            try Hex.decode("00ag")
        }
    }

    @Test func roundTripsEveryByte() throws {
        let all = (0...255).map(UInt8.init)
        #expect(try Hex.decode(Hex.encode(all)) == all)
    }
}

@Suite struct LimitsTests {
    @Test func mirrorTheABIHeader() {
        #expect(Limits.pluginNameBytesMax == 63)
        #expect(Limits.kvKeyBytesMax == 1024)
        #expect(Limits.kvValueBytesMax == 16_777_216)
        #expect(Limits.busTopicBytesMax == 255)
        #expect(Limits.busPayloadBytesMax == 4_194_304)
        #expect(Limits.httpBodyBytesMax == 8_388_608)
        #expect(Limits.ffiArgumentsMax == 16)
        #expect(Limits.httpDeferredMax == 1024)
        #expect(Limits.httpDeferTimeoutMsMax == 3_600_000)
        #expect(ABIVersion.current == ABIVersion(major: 1, minor: 3))
    }

    @Test func boundKernelInputs() {
        #expect(Limits.manifestBytesMax == 65536)
        #expect(PluginManifest.bytesMax == Limits.manifestBytesMax)
        #expect(Limits.configBytesMax == 1_048_576)
        #expect(Limits.exportsMax == 64)
    }
}
