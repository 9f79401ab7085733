// libBPCI.so's entry symbol, apart from the plugin's code so tests can link BPCIPlugin next to other plugins.
import BPCIPlugin
import MetanodePluginKit

@c(metanode_plugin_entry_v1)
public func metanodePluginEntry() -> UnsafeRawPointer? {
    PluginExport.descriptor(for: BPCI.self, name: BPCI.name, version: BPCI.version)
}
