namespace PaliGemma.Gguf.Inference;

/// <summary>
/// Runs a model's work one item at a time, strictly in the order it was submitted, on one dedicated
/// thread. Synchronous and asynchronous callers join the same queue, so neither can overtake the
/// other (SemaphoreSlim, which this replaces, wakes synchronous waiters first and promises no order).
/// </summary>
/// <remarks>
/// An item cancelled while it waits leaves the queue at once and its task is cancelled; an item that
/// is running sees the cancellation through the token it is given and decides how to stop.
/// <see cref="Dispose"/> rejects what is still waiting with <see cref="ObjectDisposedException"/>,
/// cancels the running item and returns only when the thread has left it, so native handles can be
/// freed safely afterwards.
/// </remarks>
internal sealed class RequestQueue : IDisposable
{
    private readonly Queue<WorkItem> _waiting = new();
    private readonly object _lock = new();
    private readonly CancellationTokenSource _shutdown = new();
    private readonly Thread _thread;
    private readonly string _owner;
    private bool _closed;

    public RequestQueue(string owner)
    {
        _owner = owner;
        _thread = new Thread(Serve) { IsBackground = true, Name = $"{owner} requests" };
        _thread.Start();
    }

    /// <summary>Items submitted and not yet started.</summary>
    public int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _waiting.Count(w => !w.IsFinished);
            }
        }
    }

    /// <summary>True on the queue's own thread, where waiting for the queue would wait forever.</summary>
    public bool IsServingThread => Thread.CurrentThread == _thread;

    /// <summary>
    /// Queues <paramref name="work"/> behind everything submitted before. If <paramref name="prerequisite"/>
    /// fails while the item waits (a picture that does not decode), the item fails at once with its error.
    /// </summary>
    public Task<T> Submit<T>(Func<CancellationToken, T> work, CancellationToken cancellationToken, Task? prerequisite = null)
    {
        var item = new WorkItem<T>(work, cancellationToken, _shutdown.Token);
        item.WatchWhileWaiting(prerequisite);
        lock (_lock)
        {
            if (!_closed)
            {
                _waiting.Enqueue(item);
                Monitor.Pulse(_lock);
                return item.Task;
            }
        }

        item.Reject(new ObjectDisposedException(_owner));
        return item.Task;
    }

    private void Serve()
    {
        while (true)
        {
            WorkItem item;
            lock (_lock)
            {
                while (_waiting.Count == 0 && !_closed)
                {
                    Monitor.Wait(_lock);
                }

                if (_waiting.Count == 0)
                {
                    return;
                }

                item = _waiting.Dequeue();
            }

            item.Run();
        }
    }

    public void Dispose()
    {
        if (IsServingThread)
        {
            throw new InvalidOperationException($"{_owner} cannot be disposed from inside one of its own requests (a token callback)");
        }

        List<WorkItem> rejected;
        lock (_lock)
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            rejected = [.. _waiting];
            _waiting.Clear();
            Monitor.PulseAll(_lock);
        }

        foreach (var item in rejected)
        {
            item.Reject(new ObjectDisposedException(_owner, $"{_owner} was disposed before this request started"));
        }

        _shutdown.Cancel();
        _thread.Join();
    }

    private abstract class WorkItem
    {
        private const int Queued = 0;
        private const int Started = 1;
        private const int Finished = 2;
        private int _state;

        public bool IsFinished => Volatile.Read(ref _state) == Finished;

        /// <summary>Moves the item out of the queue without running it; false if it already started or finished.</summary>
        protected bool TryFinishWhileQueued() => Interlocked.CompareExchange(ref _state, Finished, Queued) == Queued;

        protected bool TryStart() => Interlocked.CompareExchange(ref _state, Started, Queued) == Queued;

        protected void MarkFinished() => Volatile.Write(ref _state, Finished);

        public abstract void Run();

        public abstract void Reject(Exception error);
    }

    private sealed class WorkItem<T> : WorkItem
    {
        private readonly Func<CancellationToken, T> _work;
        private readonly CancellationToken _cancellation;
        private readonly CancellationToken _shutdown;

        // Continuations run elsewhere: a caller awaiting the result must never run on the queue's thread.
        private readonly TaskCompletionSource<T> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private CancellationTokenRegistration _whileQueued;

        public WorkItem(Func<CancellationToken, T> work, CancellationToken cancellation, CancellationToken shutdown)
        {
            _work = work;
            _cancellation = cancellation;
            _shutdown = shutdown;
        }

        public Task<T> Task => _result.Task;

        public void WatchWhileWaiting(Task? prerequisite)
        {
            _whileQueued = _cancellation.Register(() =>
            {
                if (TryFinishWhileQueued())
                {
                    _result.TrySetCanceled(_cancellation);
                }
            });
            prerequisite?.ContinueWith(
                t => Reject(t.Exception!.InnerException!),
                CancellationToken.None,
                TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }

        public override void Reject(Exception error)
        {
            if (TryFinishWhileQueued())
            {
                _whileQueued.Dispose();
                _result.TrySetException(error);
            }
        }

        public override void Run()
        {
            if (!TryStart())
            {
                return;
            }

            _whileQueued.Dispose();
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(_cancellation, _shutdown);
            try
            {
                _result.TrySetResult(_work(linked.Token));
            }
            catch (OperationCanceledException) when (linked.IsCancellationRequested)
            {
                _result.TrySetCanceled(_cancellation.IsCancellationRequested ? _cancellation : _shutdown);
            }
            catch (Exception e)
            {
                // Not a catch-all that hides anything: the caller gets this exact exception from its task.
                _result.TrySetException(e);
            }
            finally
            {
                MarkFinished();
            }
        }
    }
}
