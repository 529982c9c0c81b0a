import Glibc

/// Starts a detached pthread with a name (shown by `top -H`, `ps -L` and debuggers).
/// Foundation's `Thread` did this before; a plain pthread keeps Foundation out of the engine's
/// process (several MiB of resident memory). Server uses it too: Postgres is the lowest module
/// both depend on, and Postgres must not depend on Server.
package enum NamedThread {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Linux keeps at most 15 bytes of a thread name; a longer one is cut rather than refused.
    package static func start(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let shortName = String(decoding: name.utf8.prefix(15), as: UTF8.self)
        let context = Unmanaged.passRetained(Body({
            setCurrentName(shortName)
            body()
        })).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Body>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            // As Foundation's Thread.start did: the process cannot work without its threads.
            fatalError("pthread_create failed for thread \(name): errno \(result)")
        }
        _ = pthread_detach(thread)
    }

    /// pthread_setname_np is not in Swift's Glibc module map (it needs _GNU_SOURCE), so it is
    /// looked up once in libc and called through a C function pointer.
    private struct SetName: @unchecked Sendable { // An immutable C function pointer into libc.
        typealias Function = @convention(c) (pthread_t, UnsafePointer<CChar>) -> Int32
        let function: Function?
        static let shared = SetName()
        private init() {
            function = dlsym(dlopen(nil, RTLD_NOW), "pthread_setname_np").map { unsafeBitCast($0, to: Function.self) }
        }
    }

    private static func setCurrentName(_ name: String) {
        guard let function = SetName.shared.function else { return }
        _ = function(pthread_self(), name)
    }
}
