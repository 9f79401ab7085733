import MetanodeABI
import MetanodeHostBridge

// The "net" capability (ABI 1.1) of the in-memory host. A TestHost on its own has no peers: sends find no one and
// broadcasts reach nobody. MetanodePluginTesting's simulated network attaches transports to hosts so plugins on
// several hosts talk to each other deterministically.
extension TestHost {
    public func netRegister(_ plugin: PluginHostContext, protocol name: String, callback: NetReceiveCallback)
        throws(HostError)
    {
        try state.withLock { state throws(HostError) in
            try state.netProtocols.register(plugin: plugin.name, slot: plugin.slot, protocol: name, callback: callback)
        }
    }

    public func netSend(_ plugin: PluginHostContext, to peer: PeerID, protocol name: String,
                        message: UnsafeRawBufferPointer) throws(HostError) {
        throw .notFound("peer \(peer.short) is not connected (this TestHost has no network attached)")
    }

    public func netBroadcast(_ plugin: PluginHostContext, protocol name: String, message: UnsafeRawBufferPointer)
        throws(HostError) -> UInt32
    {
        0
    }

    public func netPeers(_ plugin: PluginHostContext) throws(HostError) -> [PeerStatus] { [] }

    public func netWatchPeers(_ plugin: PluginHostContext, callback: NetPeerEventCallback) throws(HostError) {
        state.withLock { $0.peerWatchers[plugin.slot] = callback }
    }

    public func netLocalKey(_ plugin: PluginHostContext) throws(HostError) -> PeerID {
        PeerID(bytes: nodePublicKey)!
    }
}
