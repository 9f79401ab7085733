import CMetanodeShim
import MetanodeABI
func probe() { var b = mn_bytes(ptr: nil, len: 0); _ = mn_ffi_call(nil, 0, 0, nil, nil, nil); _ = b; b.len = 1 }
