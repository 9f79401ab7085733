// libBPI.so's entry symbol, apart from the plugin's code so tests can link BPIPlugin next to other plugins.
import BPIPlugin
import MetanodePluginKit

@c(metanode_plugin_entry_v1)
public func metanodePluginEntry() -> UnsafeRawPointer? {
    PluginExport.descriptor(for: BPI.self, name: BPI.name, version: BPI.version)
}
