// libDockLock.so's entry symbol, apart from the plugin's code so tests can link DockLockPlugin next to other plugins.
import DockLockPlugin
import MetanodePluginKit

@c(metanode_plugin_entry_v1)
public func metanodePluginEntry() -> UnsafeRawPointer? {
    PluginExport.descriptor(for: DockLock.self, name: DockLock.name, version: DockLock.version)
}
