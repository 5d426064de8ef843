import Foundation
import Hummingbird
import NIOCore
import NIOHTTPTypes

/// The request context of the server's routes: Hummingbird's basics plus the connection, so a
/// route can tell when its client goes away.
public struct ServerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// Runs `action` when the client closes its side of the connection (or the connection ends);
    /// cancel the returned registration when the request is done. Nil off a real connection.
    func whenClientLeaves(_ action: @escaping @Sendable () -> Void) async -> DisconnectWatcher.Registration? {
        guard let watcher = try? await channel.pipeline.handler(type: DisconnectWatcher.self).get() else { return nil }
        return watcher.register(action)
    }
}

/// Sits in every connection's pipeline and notices the client leaving: the end of its input (the
/// server allows half-closed connections, so that is the first sign) or the connection closing.
/// Without it, a generation would only find out when a write fails, a step or two later, and a
/// non-streaming one not until its end.
final class DisconnectWatcher: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    // Reads pass through untouched; the type is never unwrapped.
    typealias InboundIn = Never

    private let lock = NSLock()
    private var left = false
    private var actions: [Int: @Sendable () -> Void] = [:]
    private var nextID = 0

    struct Registration: Sendable {
        let watcher: DisconnectWatcher
        let id: Int
        func cancel() { watcher.unregister(id) }
    }

    func register(_ action: @escaping @Sendable () -> Void) -> Registration {
        let (id, now): (Int, Bool) = lock.withLock {
            nextID += 1
            if !left { actions[nextID] = action }
            return (nextID, left)
        }
        if now { action() }
        return Registration(watcher: self, id: id)
    }

    private func unregister(_ id: Int) { _ = lock.withLock { actions.removeValue(forKey: id) } }

    private func clientLeft() {
        let pending: [@Sendable () -> Void] = lock.withLock {
            left = true
            defer { actions = [:] }
            return Array(actions.values)
        }
        for action in pending { action() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { clientLeft() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientLeft()
        context.fireChannelInactive()
    }
}

/// Closes a connection whose request headers do not arrive in time: from the connection's start,
/// and again once each response has been sent, the next request's head must come within
/// `limit`. The idle timeout alone would let a client that sends one byte every few seconds
/// hold a connection (and its buffers) forever.
final class HeaderTimeout: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let limit: TimeAmount
    private var deadline: Scheduled<Void>?

    init(limit: TimeAmount) { self.limit = limit }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { disarm() }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { arm(context) }  // the next request on this connection
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    private func disarm() {
        deadline?.cancel()
        deadline = nil
    }

    private func arm(_ context: ChannelHandlerContext) {
        disarm()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: limit) {
            loopBound.value.close(promise: nil)
        }
    }
}
